using System.Text;

namespace Kumo.Cli;

/// <summary>Reading what a person types, or what a script pipes in: names, passwords without echo, stdin lines.</summary>
internal static class Terminal
{
    /// <summary>Prints <paramref name="prompt"/> on stderr and reads a line without echoing it; null at end of input.</summary>
    public static string? ReadSecret(string prompt)
    {
        Console.Error.Write(prompt);
        var text = new StringBuilder();
        while (true)
        {
            var key = Console.ReadKey(intercept: true);
            switch (key.Key)
            {
                case ConsoleKey.Enter:
                    Console.Error.WriteLine();
                    return text.ToString();
                case ConsoleKey.Backspace:
                    if (text.Length > 0)
                        text.Length--;
                    break;
                default:
                    // Ctrl-D on an empty line ends input, like a shell.
                    if (key.KeyChar == '\u0004' && text.Length == 0)
                    {
                        Console.Error.WriteLine();
                        return null;
                    }
                    if (!char.IsControl(key.KeyChar))
                        text.Append(key.KeyChar);
                    break;
            }
        }
    }

    /// <summary>Prompts on stderr and reads a visible line from stdin.</summary>
    public static string Ask(CliEnvironment env, string prompt)
    {
        env.Error.Write(prompt);
        env.Error.Flush();
        return env.In.ReadLine()?.Trim() is { Length: > 0 } line ? line : throw new UsageException($"no answer to '{prompt.TrimEnd(' ', ':')}'");
    }

    /// <summary>Prompts for a password without echo.</summary>
    public static string AskSecret(CliEnvironment env, string prompt) =>
        env.ReadSecret(prompt) is { Length: > 0 } secret ? secret : throw new UsageException($"no answer to '{prompt.TrimEnd(' ', ':')}'");

    /// <summary>
    /// One line of stdin, for --password-stdin: only the line ending is removed, so a password may hold spaces.
    /// </summary>
    public static string ReadLine(CliEnvironment env, string what) =>
        env.In.ReadLine()?.TrimEnd('\r') is { Length: > 0 } line ? line : throw new UsageException($"expected {what} on stdin, got nothing");

    /// <summary>The usage error for a command that would prompt but has no terminal to prompt on.</summary>
    public static UsageException NoTerminal(string scriptedForm) =>
        new($"stdin is not a terminal, so there is no one to ask; from a script use {scriptedForm}");
}
