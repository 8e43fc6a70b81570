using System.CommandLine;
using Kumo.Cli.Commands;

namespace Kumo.Cli;

/// <summary>The `kumo` command tree. Exit codes: 0 ok, 1 API or usage error, 2 kumod unreachable, 130 interrupted.</summary>
internal static class KumoCli
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Unreachable = 2;
    public const int Interrupted = 130;

    public static async Task<int> RunAsync(string[] args, CliEnvironment env, CancellationToken cancellationToken = default)
    {
        var root = Build(new CliContext(env));
        var configuration = new InvocationConfiguration
        {
            Output = env.Out,
            Error = env.Error,
            ProcessTerminationTimeout = env.HandleSignals ? TimeSpan.FromSeconds(2) : null,
        };
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0 && parse.Action is not (System.CommandLine.Help.HelpAction or HelpWithExamples))
        {
            // One readable line, not a wall of help: the help is one flag away.
            var path = new List<string>();
            for (var r = parse.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
                path.Insert(0, r.Command.Name);
            path[0] = "kumo";
            var messages = parse.Errors.Select(e => e.Message).Distinct().ToList();
            // A typo also trips "required command missing"; the typo is the useful half.
            if (messages.Any(m => m.StartsWith("Unrecognized", StringComparison.Ordinal)))
                messages.RemoveAll(m => !m.StartsWith("Unrecognized", StringComparison.Ordinal));
            await env.Error.WriteLineAsync($"error: {string.Join("; ", messages)} (see: {string.Join(' ', path)} --help)");
            return Failed;
        }
        return await parse.InvokeAsync(configuration, cancellationToken);
    }

    public static RootCommand Build(CliContext cli)
    {
        var root = new RootCommand("kumo: manage a Kumo cloud (nodes, images, VMs) through kumod's REST API");
        cli.Examples(root,
            "kumo vm create web --image tiny --cpus 1 --memory 256M",
            "kumo vm list -o json",
            "kumo login",
            "kumo --project lab1 vm list",
            "kumo --url https://10.0.0.5:7400 node list",
            "kumo --url https://10.0.0.5:7400 --accept-fingerprint SHA256 node list   # first contact, from a script");
        root.Options.Add(cli.Url);
        root.Options.Add(cli.Project);
        root.Options.Add(cli.AcceptFingerprint);
        root.Options.Add(cli.Output);
        root.Subcommands.Add(NodeCommands.Create(cli));
        root.Subcommands.Add(ImageCommands.Create(cli));
        root.Subcommands.Add(VmCommands.Create(cli));
        root.Subcommands.Add(NetworkCommands.Create(cli));
        root.Subcommands.Add(TemplateCommands.Create(cli));
        root.Subcommands.Add(ClusterCommands.Create(cli));
        root.Subcommands.Add(ClusterCommands.Reservations(cli));
        root.Subcommands.Add(PortForwardCommands.Create(cli));
        root.Subcommands.Add(VolumeCommands.Create(cli));
        root.Subcommands.Add(ContainerCommands.Create(cli));
        root.Subcommands.Add(OperationCommands.Create(cli));
        root.Subcommands.Add(AuditCommands.Create(cli));
        root.Subcommands.Add(UsageCommands.Create(cli));
        root.Subcommands.Add(TopCommands.Create(cli));
        root.Subcommands.Add(AdminCommands.Create(cli));
        root.Subcommands.Add(ConfigCommands.Create(cli));
        foreach (var command in AuthCommands.Create(cli))
            root.Subcommands.Add(command);
        root.Subcommands.Add(TokenCommands.Create(cli));
        root.Subcommands.Add(UserCommands.Create(cli));
        root.Subcommands.Add(ProjectCommands.Create(cli));
        root.Subcommands.Add(QuotaCommands.Create(cli));
        cli.ShowExamplesInHelp(root);
        return root;
    }
}
