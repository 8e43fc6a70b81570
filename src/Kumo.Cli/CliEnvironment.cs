namespace Kumo.Cli;

/// <summary>What the process gives the CLI. Tests build one with string writers and a temporary config path.</summary>
internal sealed record CliEnvironment
{
    public required TextWriter Out { get; init; }
    public required TextWriter Error { get; init; }

    /// <summary>Answers to questions (trusting a new server); only read when <see cref="IsInputTerminal"/>.</summary>
    public TextReader In { get; init; } = TextReader.Null;

    /// <summary>True when stdin is a terminal: a person can be asked before a new server is trusted.</summary>
    public bool IsInputTerminal { get; init; }

    /// <summary>Looks up an environment variable (KUMO_URL, CI).</summary>
    public required Func<string, string?> GetVariable { get; init; }

    /// <summary>The config file, normally ~/.config/kumo/config.</summary>
    public required string ConfigPath { get; init; }

    /// <summary>True when stdout is a terminal: enables the spinner, colours and boxed tables.</summary>
    public bool IsTerminal { get; init; }

    /// <summary>Turn Ctrl-C into cancellation; off in tests that run in-process.</summary>
    public bool HandleSignals { get; init; }

    /// <summary>Spinner only for a person at a terminal; CI logs get plain lines.</summary>
    public bool IsInteractive => IsTerminal && !IsTrue(GetVariable("CI"));

    public static CliEnvironment FromProcess() => new()
    {
        Out = Console.Out,
        Error = Console.Error,
        In = Console.In,
        IsInputTerminal = !Console.IsInputRedirected,
        GetVariable = Environment.GetEnvironmentVariable,
        ConfigPath = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile, Environment.SpecialFolderOption.DoNotVerify), ".config", "kumo", "config"),
        IsTerminal = !Console.IsOutputRedirected,
        HandleSignals = true,
    };

    private static bool IsTrue(string? value) =>
        value is not null && (value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase));
}
