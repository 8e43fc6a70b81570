using Dapper;
using Kumo.Protocol;
using Kumo.Server.Storage;

namespace Kumo.Server.Monitoring;

/// <summary>
/// Measured usage: the CPU-seconds guests actually used, from the cumulative CPU time of their QEMU processes.
/// Each report adds what the counter grew since the value last counted, which is stored with the process it belongs
/// to in the same transaction as the sum; so a report that arrives twice, or again after an agent or kumod restart, adds
/// nothing, and a guest restart (a new process, counting from 0) is told apart from a counter going backwards.
/// </summary>
/// <remarks>
/// Sums are kept per instance and UTC hour; a queried period that cuts through an hour gets that hour's seconds in
/// proportion to how much of the span between its first and last sample it covers.
/// </remarks>
public static class MeasuredUsage
{
    private sealed record Cursor(string ProcessKey, double CpuSeconds);

    private sealed record Owner(string Name, string? OwnerId, string Project);

    /// <summary>Adds what the report's guests used since last counted. Guests not assigned to the reporting node are ignored.</summary>
    public static void Record(WriteContext ctx, string nodeId, IEnumerable<GuestSample> guests, DateTimeOffset now)
    {
        var c = ctx.Connection;
        var hour = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, 0, 0, TimeSpan.Zero);
        foreach (var g in guests)
        {
            var owner = c.QuerySingleOrDefault<Owner>("SELECT name AS Name, owner_id AS OwnerId, project AS Project FROM instances WHERE id = @id AND node_id = @nodeId",
                new { id = g.InstanceId, nodeId }, ctx.Transaction);
            if (owner is null) continue;
            var cursor = c.QuerySingleOrDefault<Cursor>("SELECT process_key AS ProcessKey, cpu_seconds AS CpuSeconds FROM measured_cursors WHERE instance_id = @id",
                new { id = g.InstanceId }, ctx.Transaction);
            var added = Added(cursor?.ProcessKey, cursor?.CpuSeconds ?? 0, g.ProcessKey, g.CpuSeconds);
            if (cursor is not null && cursor.ProcessKey == g.ProcessKey && added == 0) continue;
            c.Execute(
                """
                INSERT INTO measured_cursors (instance_id, process_key, cpu_seconds) VALUES (@id, @key, @cpu)
                ON CONFLICT (instance_id) DO UPDATE SET process_key = excluded.process_key, cpu_seconds = excluded.cpu_seconds
                """, new { id = g.InstanceId, key = g.ProcessKey, cpu = g.CpuSeconds }, ctx.Transaction);
            if (added <= 0) continue;
            c.Execute(
                """
                INSERT INTO measured_usage (instance_id, hour, instance_name, owner_id, project, cpu_seconds, first_at, last_at)
                VALUES (@id, @hour, @Name, @OwnerId, @Project, @added, @now, @now)
                ON CONFLICT (instance_id, hour) DO UPDATE SET cpu_seconds = cpu_seconds + excluded.cpu_seconds, last_at = excluded.last_at
                """,
                new { id = g.InstanceId, hour = Json.At(hour), owner.Name, owner.OwnerId, owner.Project, added, now = Json.At(now) }, ctx.Transaction);
        }
    }

    /// <summary>
    /// CPU-seconds to add for a sample: the growth since the counted value for the same process; the whole counter for
    /// a process not seen before (it started at 0); nothing when the same process's counter is not ahead.
    /// </summary>
    internal static double Added(string? countedKey, double countedSeconds, string key, double seconds) =>
        countedKey != key ? Math.Max(0, seconds) : Math.Max(0, seconds - countedSeconds);

    /// <summary>Forgets the counter of a deleted instance (its hourly sums stay: they are history).</summary>
    public static void Forget(WriteContext ctx, string instanceId) =>
        ctx.Connection.Execute("DELETE FROM measured_cursors WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction);
}
