using System.Text.RegularExpressions;

namespace Kumo.Core;

/// <summary>Every Kumo resource name is an RFC 1123 label: it ends up in host names, file names and proxy routes.</summary>
public static partial class Names
{
    public const int MaxLength = 63;

    // \z, not $: in .NET $ also matches before a final '\n', which would let "web\n" through.
    [GeneratedRegex(@"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\z", RegexOptions.CultureInvariant)]
    private static partial Regex LabelRegex();

    /// <summary>Returns null when valid, otherwise one readable sentence saying what is wrong.</summary>
    public static string? Validate(string? name, string what = "name")
    {
        if (string.IsNullOrEmpty(name))
            return $"{what} must not be empty";
        if (name.Length > MaxLength)
            return $"{what} is {name.Length} characters long; the limit is {MaxLength}";
        // Check ASCII first so look-alike Unicode letters get a precise message.
        foreach (var c in name)
        {
            if (c > 127)
                return $"{what} '{Printable(name)}' contains a non-ASCII character (U+{(int)c:X4}); use lowercase a-z, 0-9 and '-'";
        }
        if (!LabelRegex().IsMatch(name))
            return $"{what} '{name}' is not a valid RFC 1123 label: use lowercase a-z, 0-9 and '-', starting and ending with a letter or digit";
        return null;
    }

    public static bool IsValid(string? name) => Validate(name) is null;

    private static string Printable(string s)
    {
        var chars = s.Select(c => char.IsControl(c) || c > 127 ? '?' : c).ToArray();
        return new string(chars);
    }
}
