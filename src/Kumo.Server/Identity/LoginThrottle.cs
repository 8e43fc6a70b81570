using System.Collections.Concurrent;

namespace Kumo.Server.Identity;

/// <summary>
/// Failed-login limits per account and per source address: after <see cref="MaxFailures"/> failures inside the
/// window, further attempts are refused until the window has passed, whether or not the password is right.
/// </summary>
public sealed class LoginThrottle(TimeProvider time)
{
    public const int MaxFailures = 5;
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(5);

    private readonly ConcurrentDictionary<string, Queue<DateTimeOffset>> _failures = new();

    /// <summary>Null when allowed; otherwise how long to wait.</summary>
    public TimeSpan? RetryAfter(string account, string source)
    {
        var now = time.GetUtcNow();
        TimeSpan? wait = null;
        foreach (var key in Keys(account, source))
        {
            if (!_failures.TryGetValue(key, out var q)) continue;
            lock (q)
            {
                while (q.Count > 0 && now - q.Peek() > Window) q.Dequeue();
                if (q.Count >= MaxFailures)
                {
                    var w = q.Peek() + Window - now;
                    wait = wait is null || w > wait ? w : wait;
                }
            }
        }
        return wait;
    }

    public void Failed(string account, string source)
    {
        var now = time.GetUtcNow();
        foreach (var key in Keys(account, source))
        {
            var q = _failures.GetOrAdd(key, _ => new Queue<DateTimeOffset>());
            lock (q) q.Enqueue(now);
        }
    }

    public void Succeeded(string account) => _failures.TryRemove("user:" + account, out _);

    private static string[] Keys(string account, string source) => ["user:" + account, "source:" + source];
}
