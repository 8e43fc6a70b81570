using Kumo.Core;

namespace Kumo.Cli;

/// <summary>Fast client-side checks with the same rules as kumod; kumod still decides.</summary>
internal static class Check
{
    public static string Name(string? name, string what)
    {
        var error = Names.Validate(name, what);
        return error is null ? name! : throw new UsageException(error);
    }

    public static string? Size(string? text, string option)
    {
        if (text is null)
            return null;
        return ByteSize.TryParse(text, out _, out var error) ? text.Trim() : throw new UsageException($"{option}: {error}");
    }

    public static int? Positive(int? value, string option) =>
        value is null or > 0 ? value : throw new UsageException($"{option} must be at least 1, not {value}");

    /// <summary>Parses repeated key=value options into a map; later keys win.</summary>
    public static Dictionary<string, string> Labels(IEnumerable<string>? pairs, string option)
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs ?? [])
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
                throw new UsageException($"{option} '{pair}' is not key=value");
            labels[pair[..eq]] = pair[(eq + 1)..];
        }
        return labels;
    }

    /// <summary>Checks a --since value with kumod's rules; the text goes to kumod as typed, so durations count back from its clock.</summary>
    public static string? Since(string? text, string option) =>
        text is null || AuditSince.TryParse(text, DateTimeOffset.UtcNow, out _, out var error) ? text?.Trim() : throw new UsageException($"{option}: {error}");

    public static string OperationId(string? id) =>
        string.IsNullOrWhiteSpace(id) ? throw new UsageException("operation id must not be empty") : id.Trim();
}
