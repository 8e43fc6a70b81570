namespace Kumo.Cli.Tests;

internal sealed record CliResult(int ExitCode, string Out, string Err)
{
    public string[] ErrLines => Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
}

/// <summary>Runs `kumo ARGS` in-process, as a script would see it: not a terminal (unless given terminal input), output captured.</summary>
internal static class CliRunner
{
    public static async Task<CliResult> RunAsync(string[] args, IReadOnlyDictionary<string, string>? variables = null,
        string? configPath = null, string? stdin = null, string? terminalInput = null, CancellationToken cancellationToken = default)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        using var input = new StringReader(stdin ?? "");
        var environment = new CliEnvironment
        {
            Out = stdout,
            Error = stderr,
            In = terminalInput is not null ? new StringReader(terminalInput) : input,
            IsInputTerminal = terminalInput is not null,
            GetVariable = name => variables?.GetValueOrDefault(name),
            ConfigPath = configPath ?? Path.Combine(Path.GetTempPath(), $"kumo-no-config-{Guid.NewGuid():N}", "config"),
            IsTerminal = false,
            HandleSignals = false,
        };
        var code = await KumoCli.RunAsync(args, environment, cancellationToken);
        return new CliResult(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>`kumo --url URL ARGS`.</summary>
    public static Task<CliResult> RunAsync(Uri url, params string[] args) =>
        RunAsync(["--url", url.ToString(), .. args]);
}

/// <summary>A private temporary directory, removed on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("kumo-cli-tests-").FullName;

    public string File(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
