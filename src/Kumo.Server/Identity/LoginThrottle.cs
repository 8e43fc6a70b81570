namespace Kumo.Server.Identity;

/// <summary>
/// Failed-login limits per account and per source address: after <see cref="MaxFailures"/> failures inside the
/// window, further attempts are refused until the window has passed, whether or not the password is right.
/// </summary>
/// <remarks>
/// An attempt is counted as a failure when it begins and taken back when it succeeds. Counting only after the
/// password check (hundreds of milliseconds) would let any number of guesses sent at once pass the limit.
/// </remarks>
public sealed class LoginThrottle(TimeProvider time)
{
    public const int MaxFailures = 5;
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(5);

    private readonly Lock _gate = new();
    private readonly Dictionary<string, List<DateTimeOffset>> _failures = [];

    /// <summary>
    /// Null when the attempt may go on (it now counts as a failure until <see cref="Succeeded"/>); otherwise how long
    /// to wait. <paramref name="attempt"/> names the attempt for <see cref="Succeeded"/>.
    /// </summary>
    public TimeSpan? TryBegin(string account, string source, out DateTimeOffset attempt)
    {
        var now = attempt = time.GetUtcNow();
        var keys = Keys(account, source);
        lock (_gate)
        {
            TimeSpan? wait = null;
            foreach (var key in keys)
            {
                if (!_failures.TryGetValue(key, out var list)) continue;
                list.RemoveAll(t => now - t > Window);
                if (list.Count == 0) _failures.Remove(key);
                else if (list.Count >= MaxFailures)
                {
                    var w = list[0] + Window - now;
                    wait = wait is null || w > wait ? w : wait;
                }
            }
            if (wait is not null) return wait;
            foreach (var key in keys)
            {
                if (!_failures.TryGetValue(key, out var list)) _failures[key] = list = [];
                list.Add(now);
            }
            return null;
        }
    }

    /// <summary>The attempt was right: the account starts afresh and the source is no longer charged for it.</summary>
    public void Succeeded(string account, string source, DateTimeOffset attempt)
    {
        lock (_gate)
        {
            _failures.Remove("user:" + account);
            if (_failures.TryGetValue("source:" + source, out var list))
            {
                list.Remove(attempt);
                if (list.Count == 0) _failures.Remove("source:" + source);
            }
        }
    }

    private static string[] Keys(string account, string source) => ["user:" + account, "source:" + source];
}
