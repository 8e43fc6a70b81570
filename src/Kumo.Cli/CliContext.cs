using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using Kumo.Cli.Configuration;
using Kumo.Client;

namespace Kumo.Cli;

/// <summary>The global options and the one place where command actions are run and their failures turned into exit codes.</summary>
internal sealed class CliContext(CliEnvironment env)
{
    public CliEnvironment Environment { get; } = env;

    public Option<string?> Url { get; } = new("--url")
    {
        Description = $"kumod URL (default: ${CliConfig.UrlVariable}, then url= in ~/.config/kumo/config, then {CliConfig.DefaultUrl})",
        HelpName = "URL",
        Recursive = true,
    };

    public Option<string?> Project { get; } = new("--project")
    {
        Description = $"Project to act in (default: ${CliConfig.ProjectVariable}, then project= set by kumo project use, then your personal project)",
        HelpName = "NAME",
        Recursive = true,
    };

    public Option<string?> AcceptFingerprint { get; } = new("--accept-fingerprint")
    {
        Description = "On first contact with an https kumod, trust its CA if it has this SHA-256 fingerprint (for scripts)",
        HelpName = "SHA256",
        Recursive = true,
    };

    public Option<string> Output { get; } = new Option<string>("--output", "-o")
    {
        Description = "Output format",
        HelpName = "table|json|yaml|csv",
        Recursive = true,
        DefaultValueFactory = _ => "table",
    }.AcceptOnlyFromAmong(Cli.Output.FormatNames);

    private readonly Dictionary<Command, string[]> _examples = [];

    /// <summary>Short examples printed at the end of the command's --help.</summary>
    public void Examples(Command command, params string[] lines) => _examples[command] = lines;

    public void ShowExamplesInHelp(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().Single();
        if (help.Action is HelpAction standard)
            help.Action = new HelpWithExamples(standard, _examples);
    }

    public void SetAction(Command command, Func<Invocation, Task<int>> action) =>
        command.SetAction((parse, cancellationToken) => RunAsync(parse, action, cancellationToken));

    private async Task<int> RunAsync(ParseResult parse, Func<Invocation, Task<int>> action, CancellationToken cancellationToken)
    {
        var output = new Output(Environment, Cli.Output.ParseFormat(parse.GetValue(Output)));
        using var invocation = new Invocation(this, parse, output, cancellationToken);
        try
        {
            return await action(invocation);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            output.Error("interrupted");
            return KumoCli.Interrupted;
        }
        catch (KumoApiException e)
        {
            output.Error(e);
            return e.IsUnreachable ? KumoCli.Unreachable : KumoCli.Failed;
        }
        catch (Exception e) when (e is UsageException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            output.Error(e.Message);
            return KumoCli.Failed;
        }
    }
}

/// <summary>One run of one command: its parsed arguments, where to print, and a client made on first use.</summary>
internal sealed class Invocation(CliContext cli, ParseResult parse, Output output, CancellationToken cancellationToken) : IDisposable
{
    private KumoClient? _client;

    public ParseResult Parse { get; } = parse;

    public Output Output { get; } = output;

    public CancellationToken Cancellation { get; } = cancellationToken;

    public CliEnvironment Environment => cli.Environment;

    public KumoClient Client => _client ??= CreateClient();

    public ResolvedUrl ResolveUrl() => CliConfig.ResolveUrl(Parse.GetValue(cli.Url), cli.Environment);

    /// <summary>The project chosen by --project, KUMO_PROJECT or kumo project use; null for the personal project.</summary>
    public string? Project => CliConfig.ResolveProject(Parse.GetValue(cli.Project), cli.Environment);

    /// <summary>--accept-fingerprint: the CA a script expects on first contact.</summary>
    public string? AcceptFingerprint => Parse.GetValue(cli.AcceptFingerprint);

    public T Get<T>(Option<T> option) => Parse.GetValue(option)!;

    public T Get<T>(Argument<T> argument) => Parse.GetValue(argument)!;

    public void Dispose() => _client?.Dispose();

    /// <summary>http:// only when the URL says so; https trusts the CA pinned for that server, settled on first use.</summary>
    private KumoClient CreateClient()
    {
        var url = ResolveUrl().Url;
        var client = url.Scheme == Uri.UriSchemeHttp
            ? new KumoClient(url)
            : new KumoClient(url, new TrustOnFirstUse(url, cli.Environment, AcceptFingerprint));
        client.Token = CliConfig.ResolveToken(cli.Environment);
        client.Project = Project;
        return client;
    }
}

/// <summary>The standard help, followed by the command's examples.</summary>
internal sealed class HelpWithExamples(HelpAction standard, IReadOnlyDictionary<Command, string[]> examples) : SynchronousCommandLineAction
{
    public override int Invoke(ParseResult parseResult)
    {
        var result = standard.Invoke(parseResult);
        if (examples.TryGetValue(parseResult.CommandResult.Command, out var lines))
        {
            var output = parseResult.InvocationConfiguration.Output;
            output.WriteLine("Examples:");
            foreach (var line in lines)
                output.WriteLine("  " + line);
            output.WriteLine();
        }
        return result;
    }
}
