namespace Kumo.Cli;

/// <summary>What the process gives the CLI. Tests build one with string writers and a temporary config path.</summary>
internal sealed record CliEnvironment
{
    public required TextWriter Out { get; init; }
    public required TextWriter Error { get; init; }

    /// <summary>Standard input, for --password-stdin and friends.</summary>
    public TextReader In { get; init; } = TextReader.Null;

    /// <summary>True when stdin is a terminal, so the CLI may prompt a person for a name or password.</summary>
    public bool IsInputTerminal { get; init; }

    /// <summary>Prompts on the terminal and reads a line without echoing it (passwords).</summary>
    public Func<string, string?> ReadSecret { get; init; } = _ => null;

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
        ReadSecret = Terminal.ReadSecret,
        GetVariable = Environment.GetEnvironmentVariable,
        ConfigPath = Path.Combine(ConfigHome(), "kumo", "config"),
        IsTerminal = !Console.IsOutputRedirected,
        HandleSignals = true,
    };

    /// <summary>$XDG_CONFIG_HOME when set to an absolute path, else ~/.config.</summary>
    private static string ConfigHome() =>
        Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { } xdg && Path.IsPathRooted(xdg)
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile, Environment.SpecialFolderOption.DoNotVerify), ".config");

    private static bool IsTrue(string? value) =>
        value is not null && (value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase));
}
