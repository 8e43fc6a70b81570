using System.Globalization;

namespace Kumo.Core;

/// <summary>One recorded API call (GET /audit, and one line of GET /audit/export).</summary>
public sealed record AuditEntry
{
    /// <summary>Position in the chain, from 1 with no gaps.</summary>
    public long Seq { get; init; }

    /// <summary>When the request arrived.</summary>
    public DateTimeOffset Time { get; init; }

    public string? UserId { get; init; }
    public string? UserName { get; init; }

    /// <summary>The caller's network address.</summary>
    public required string Source { get; init; }

    public required string Method { get; init; }

    /// <summary>kind.verb of the endpoint's permission ("instance.create"), agent.METHOD for agent calls, else METHOD and route.</summary>
    public required string Action { get; init; }

    /// <summary>The path, with secret-looking query values redacted.</summary>
    public required string Target { get; init; }

    /// <summary>One of <see cref="AuditOutcomes"/>.</summary>
    public required string Outcome { get; init; }

    /// <summary>The HTTP status the caller got (for agent calls, the HTTP equivalent of the gRPC status).</summary>
    public int Status { get; init; }

    public required string RequestId { get; init; }
    public required string PrevHash { get; init; }
    public required string Hash { get; init; }
}

/// <summary>The answer of GET /audit/verify.</summary>
public sealed record AuditVerification
{
    public bool Ok { get; init; }

    /// <summary>Entries walked (all of them when the chain is intact).</summary>
    public long Count { get; init; }

    /// <summary>The entry count the signed checkpoint vouches for; null when there is no valid checkpoint.</summary>
    public long? CheckpointCount { get; init; }

    /// <summary>The first broken entry; null when intact, or when the fault is the checkpoint itself.</summary>
    public long? BrokenSeq { get; init; }

    public string? Reason { get; init; }
}

/// <summary>How a call ended, as the audit log records it. Persisted strings.</summary>
public static class AuditOutcomes
{
    /// <summary>Answered with 1xx-3xx.</summary>
    public const string Allowed = "allowed";

    /// <summary>Refused by authentication or authorization (401, 403).</summary>
    public const string Denied = "denied";

    /// <summary>Any other 4xx or 5xx, or the caller went away first.</summary>
    public const string Error = "error";

    /// <summary>A stream (server-sent events, export, agent watch, WebSocket) was about to start; recorded before its first byte.</summary>
    public const string StreamStarted = "stream-started";
}

/// <summary>The <c>since</c> filter of the audit log: an RFC 3339 time, or a duration back from now ("90s", "15m", "1h", "2d", "1h30m").</summary>
public static class AuditSince
{
    public static bool TryParse(string? text, DateTimeOffset now, out DateTimeOffset since, out string? error)
    {
        since = default;
        error = null;
        var s = text?.Trim() ?? "";
        if (s.Length == 0)
        {
            error = "since must not be empty";
            return false;
        }
        if (TryDuration(s, out var back))
        {
            since = now - back;
            return true;
        }
        if (s.Contains('T', StringComparison.OrdinalIgnoreCase)
            && DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out since))
            return true;
        error = $"'{s}' is neither an RFC 3339 time (2026-11-24T12:00:00Z) nor a duration (30m, 1h, 2d)";
        return false;
    }

    private static bool TryDuration(string s, out TimeSpan duration)
    {
        const long Limit = 100L * 365 * 24 * 3600;
        duration = TimeSpan.Zero;
        long seconds = 0;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
            if (i == start || i == s.Length || i - start > 9) return false;
            var n = long.Parse(s.AsSpan(start, i - start), CultureInfo.InvariantCulture);
            long unit = s[i] switch
            {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 7 * 86400,
                _ => 0,
            };
            if (unit == 0) return false;
            i++;
            seconds += n * unit;
            if (seconds > Limit) return false;
        }
        duration = TimeSpan.FromSeconds(seconds);
        return seconds > 0;
    }
}
