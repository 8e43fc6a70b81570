using System.Globalization;

namespace Kumo.Core;

/// <summary>Binary sizes as users write them: 256M = 256 MiB, 8G = 8 GiB, plain numbers are bytes.</summary>
public static class ByteSize
{
    public const long KiB = 1024, MiB = KiB * 1024, GiB = MiB * 1024, TiB = GiB * 1024;

    /// <summary>Largest size Kumo accepts for anything (memory, disks): 64 TiB.</summary>
    public const long Max = 64 * TiB;

    public static bool TryParse(string? text, out long bytes, out string? error)
    {
        bytes = 0;
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "size must not be empty";
            return false;
        }
        var s = text.Trim();
        long unit = 1;
        var suffix = s.TrimStart('-', '+', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9');
        var number = s[..(s.Length - suffix.Length)];
        switch (suffix.ToUpperInvariant())
        {
            case "": case "B": unit = 1; break;
            case "K": case "KB": case "KI": case "KIB": unit = KiB; break;
            case "M": case "MB": case "MI": case "MIB": unit = MiB; break;
            case "G": case "GB": case "GI": case "GIB": unit = GiB; break;
            case "T": case "TB": case "TI": case "TIB": unit = TiB; break;
            default:
                error = $"size '{text}' has an unknown unit '{suffix}'; use K, M, G or T (binary)";
                return false;
        }
        if (!long.TryParse(number, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
        {
            error = $"size '{text}' is not a number followed by a unit (e.g. 256M, 8G)";
            return false;
        }
        if (n <= 0)
        {
            error = $"size '{text}' must be greater than zero";
            return false;
        }
        if (n > Max / unit)
        {
            error = $"size '{text}' is larger than the maximum of {Format(Max)}";
            return false;
        }
        bytes = n * unit;
        return true;
    }

    public static long Parse(string text) =>
        TryParse(text, out var b, out var e) ? b : throw new FormatException(e);

    /// <summary>For people: exact when round ("256M"), otherwise one decimal in the largest unit ("23.5G").</summary>
    public static string Human(long bytes)
    {
        var exact = Format(bytes);
        if (!exact.EndsWith('K') && !char.IsDigit(exact[^1]) || bytes < KiB) return exact;
        var (unit, suffix) = bytes >= TiB ? (TiB, "T") : bytes >= GiB ? (GiB, "G") : bytes >= MiB ? (MiB, "M") : (KiB, "K");
        return (bytes / (double)unit).ToString("0.#", CultureInfo.InvariantCulture) + suffix;
    }

    public static string Format(long bytes)
    {
        if (bytes >= TiB && bytes % TiB == 0) return $"{bytes / TiB}T";
        if (bytes >= GiB && bytes % GiB == 0) return $"{bytes / GiB}G";
        if (bytes >= MiB && bytes % MiB == 0) return $"{bytes / MiB}M";
        if (bytes >= KiB && bytes % KiB == 0) return $"{bytes / KiB}K";
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
