using System.Globalization;

namespace Kumo.Core;

/// <summary>Durations as users write them: 90s, 15m, 1h, 7d.</summary>
public static class Durations
{
    public static bool TryParse(string? text, out TimeSpan duration, out string? error)
    {
        duration = default;
        error = null;
        var s = text?.Trim() ?? "";
        if (s.Length < 2 || !long.TryParse(s[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n <= 0)
        {
            error = $"duration '{text}' is not a positive number followed by s, m, h or d (e.g. 30m, 1h)";
            return false;
        }
        TimeSpan? unit = char.ToLowerInvariant(s[^1]) switch
        {
            's' => TimeSpan.FromSeconds(1),
            'm' => TimeSpan.FromMinutes(1),
            'h' => TimeSpan.FromHours(1),
            'd' => TimeSpan.FromDays(1),
            _ => null,
        };
        if (unit is null || n > 3650 * TimeSpan.TicksPerDay / unit.Value.Ticks)
        {
            error = $"duration '{text}' is not a positive number followed by s, m, h or d (e.g. 30m, 1h)";
            return false;
        }
        duration = unit.Value * n;
        return true;
    }
}
