namespace Kumo.Cli;

/// <summary>The user asked for something the CLI can reject without asking kumod; exit code 1.</summary>
internal sealed class UsageException(string message) : Exception(message);
