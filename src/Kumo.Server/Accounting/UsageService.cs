using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Storage;

namespace Kumo.Server.Accounting;

/// <summary>
/// Allocated usage: the intervals <see cref="Instances.InstanceService"/> records while an instance is shown running,
/// clipped to a period and summed per (user, project).
/// </summary>
public sealed class UsageService(Database db, TimeProvider time)
{
    public static readonly TimeSpan DefaultPeriod = TimeSpan.FromDays(30);

    private sealed record IntervalRow(string? OwnerId, string? UserName, string Project, long Cpus, long MemoryBytes, long DiskBytes,
        string StartedAt, string? EndedAt);

    private sealed record MeasuredRow(string? OwnerId, string? UserName, string Project, double CpuSeconds, string FirstAt, string LastAt);

    /// <remarks>
    /// A non-admin sees only their own usage: the user filter is forced to them, and naming someone else is a 404 (not
    /// theirs to learn). Unknown users are a 404 for admins too.
    /// </remarks>
    public async Task<IReadOnlyList<UsageRecord>> ListAsync(Caller caller, string? user, string? project, DateTimeOffset? from,
        DateTimeOffset? to, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var end = to ?? now;
        var start = from ?? end - DefaultPeriod;
        if (start >= end)
            throw ProblemException.Validation("from", "must be before to");

        string? ownerId;
        if (!caller.IsAdmin)
        {
            if (user is not null && user != caller.UserName && user != caller.UserId)
                throw ProblemException.NotFound("user", user);
            ownerId = caller.UserId;
        }
        else if (user is not null)
        {
            ownerId = await db.ReadAsync(c => c.QuerySingleOrDefault<string>(
                "SELECT id FROM users WHERE name = @user OR id = @user", new { user }), ct)
                ?? throw ProblemException.NotFound("user", user);
        }
        else
        {
            ownerId = null;
        }

        var rows = await db.ReadAsync(c => c.Query<IntervalRow>(
            """
            SELECT u.owner_id AS OwnerId, us.name AS UserName, u.project AS Project, u.cpus AS Cpus, u.memory_bytes AS MemoryBytes,
                u.disk_bytes AS DiskBytes, u.started_at AS StartedAt, u.ended_at AS EndedAt
            FROM usage_intervals u LEFT JOIN users us ON us.id = u.owner_id
            WHERE (@all OR u.owner_id = @ownerId) AND (@project IS NULL OR u.project = @project)
                AND u.started_at < @to AND (u.ended_at IS NULL OR u.ended_at > @from)
            """,
            new { all = caller.IsAdmin && ownerId is null, ownerId, project, from = Json.At(start), to = Json.At(end) }).ToList(), ct);

        // Hourly sums of measured CPU that may overlap the period (an hour starts at most an hour before its samples end).
        var measured = await db.ReadAsync(c => c.Query<MeasuredRow>(
            """
            SELECT m.owner_id AS OwnerId, us.name AS UserName, m.project AS Project, m.cpu_seconds AS CpuSeconds, m.first_at AS FirstAt, m.last_at AS LastAt
            FROM measured_usage m LEFT JOIN users us ON us.id = m.owner_id
            WHERE (@all OR m.owner_id = @ownerId) AND (@project IS NULL OR m.project = @project)
                AND m.hour < @to AND m.last_at >= @from
            """,
            new { all = caller.IsAdmin && ownerId is null, ownerId, project, from = Json.At(start - TimeSpan.FromHours(1)), to = Json.At(end) }).ToList(), ct);

        var allocated = rows
            .Select(r => (Row: r, Seconds: Overlap(Json.Time(r.StartedAt), r.EndedAt is null ? now : Json.Time(r.EndedAt), start, end)))
            .Where(x => x.Seconds > 0)
            .GroupBy(x => (x.Row.OwnerId, x.Row.Project))
            .ToDictionary(g => g.Key, g => g.ToList());
        var cpu = measured
            .Select(m => (Row: m, Seconds: m.CpuSeconds * Share(Json.Time(m.FirstAt), Json.Time(m.LastAt), start, end)))
            .Where(x => x.Seconds > 0)
            .GroupBy(x => (x.Row.OwnerId, x.Row.Project))
            .ToDictionary(g => g.Key, g => (User: g.First().Row.UserName, Seconds: g.Sum(x => x.Seconds)));

        return allocated.Keys.Union(cpu.Keys)
            .Select(key =>
            {
                var a = allocated.GetValueOrDefault(key) ?? [];
                var m = cpu.GetValueOrDefault(key);
                return new UsageRecord
                {
                    User = a.Count > 0 ? a[0].Row.UserName : m.User,
                    UserId = key.OwnerId,
                    Project = key.Project,
                    From = start,
                    To = end,
                    RunningSeconds = a.Sum(x => x.Seconds),
                    VcpuSeconds = a.Sum(x => x.Seconds * x.Row.Cpus),
                    MemoryMibSeconds = a.Sum(x => x.Seconds * x.Row.MemoryBytes / ByteSize.MiB),
                    DiskGibHours = a.Sum(x => x.Seconds / 3600 * x.Row.DiskBytes / ByteSize.GiB),
                    CpuSeconds = m.Seconds,
                };
            })
            .OrderBy(r => r.User ?? r.UserId ?? "", StringComparer.Ordinal).ThenBy(r => r.Project, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>
    /// The share of an hour's measured CPU that falls in [from, to): the part of the span between its first and last
    /// sample inside the period (all or nothing for a single sample).
    /// </summary>
    internal static double Share(DateTimeOffset first, DateTimeOffset last, DateTimeOffset from, DateTimeOffset to)
    {
        if (last <= first) return first >= from && first < to ? 1 : 0;
        return Overlap(first, last, from, to) / (last - first).TotalSeconds;
    }

    /// <summary>Seconds of [start, end) inside [from, to).</summary>
    internal static double Overlap(DateTimeOffset start, DateTimeOffset end, DateTimeOffset from, DateTimeOffset to)
    {
        var a = start > from ? start : from;
        var b = end < to ? end : to;
        return b > a ? (b - a).TotalSeconds : 0;
    }
}
