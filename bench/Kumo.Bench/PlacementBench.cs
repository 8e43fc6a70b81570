using System.Diagnostics;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Instances;
using Kumo.Server.Scheduling;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;

namespace Kumo.Bench;

/// <summary>
/// Concurrent creates through InstanceService.CreateAsync against 1,000 simulated nodes (registered, no agents):
/// scheduler placement plus the durable write, batched by group commit. Baseline: the same number of single-row
/// INSERTs, each in its own durable transaction, on a plain SQLite WAL file with synchronous=FULL.
/// </summary>
internal static class PlacementBench
{
    public const string Name = "placement";

    private const int Nodes = 1000;
    private const int Creates = 20_000;
    private const int Callers = 64;
    private const int WarmupCreates = 2000;
    private const double TargetPerSecond = 10_000;

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        var result = new BenchResult(Name, $"{Creates:N0} single-row INSERTs, one durable transaction each (SQLite WAL, synchronous=FULL)");
        var nodeIds = new List<string>();
        double perSecond, perCommit;
        long commits;
        double cpuPerCreate;
        List<double> latencies;
        await using (var server = await InProcessServer.StartAsync(ct))
        {
            var nodes = server.Get<NodeService>();
            var labels = new Dictionary<string, string> { ["kumo.bench"] = "simulated" };
            var registerStart = Stopwatch.GetTimestamp();
            nodeIds.AddRange(await Task.WhenAll(Enumerable.Range(0, Nodes).Select(i =>
                nodes.RegisterAsync($"sim-{i:D4}", 16, 64 * ByteSize.GiB, "simulated", labels, "simulated", ct))));
            var registerMs = Stopwatch.GetElapsedTime(registerStart).TotalMilliseconds;

            var instances = server.Get<InstanceService>();
            var db = server.Get<Database>();
            // Unmeasured: lets the JIT promote the hot paths to tier 1 first (it waits for a quiet 100 ms).
            await CreateManyAsync(instances, server.Admin, "warm", WarmupCreates, new double[WarmupCreates], ct);
            await Task.Delay(1000, ct);

            var commitsBefore = db.Commits;
            var lat = new double[Creates];
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var start = Stopwatch.GetTimestamp();
            await CreateManyAsync(instances, server.Admin, "p", Creates, lat, ct);
            var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            cpuPerCreate = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMilliseconds * 1000 / Creates;
            commits = db.Commits - commitsBefore;
            perSecond = Creates / seconds;
            perCommit = (double)Creates / commits;
            latencies = [.. lat];

            var scheduler = server.Get<Scheduler>();
            var perNode = nodeIds.Select(id => scheduler.Usage(id).Instances).ToList();
            result.Notes.Add($"1,000 simulated nodes (sim-0000..sim-0999, registered through NodeService, no agents) in {registerMs:0} ms; "
                + $"spread after {WarmupCreates + Creates:N0} creates: {perNode.Min()}..{perNode.Max()} instances per node");
            result.Details["registerNodesMs"] = Math.Round(registerMs, 1);
            result.Details["instancesPerNode"] = new { min = perNode.Min(), max = perNode.Max() };
        }

        var baseline = PlainInsertsPerSecond(Creates);
        result.Rows.Add(new($"placements on {Nodes:N0} simulated nodes ({Creates:N0} creates, {Callers} callers)", perSecond, "/s", baseline, $">={TargetPerSecond:N0}/s", perSecond >= TargetPerSecond));
        result.Rows.Add(new("  durable commits (Database.Commits delta)", commits, ""));
        result.Rows.Add(new("  placements per commit", perCommit, ""));
        result.Rows.Add(new("  create latency p50", Stats.Percentile(latencies, 50), "ms"));
        result.Rows.Add(new("  create latency p99", Stats.Percentile(latencies, 99), "ms"));
        result.Rows.Add(new("  process CPU per create (all threads)", cpuPerCreate, "us"));
        result.Details["placementsPerSecond"] = Math.Round(perSecond);
        result.Details["commits"] = commits;
        result.Details["baselineInsertsPerSecond"] = Math.Round(baseline);
        return result;
    }

    private static async Task CreateManyAsync(InstanceService instances, Kumo.Server.Identity.Caller admin, string prefix, int count, double[] latencies, CancellationToken ct)
    {
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, Callers).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                var t0 = Stopwatch.GetTimestamp();
                await instances.CreateAsync(admin, "admin", new InstancesPost { Name = $"{prefix}-{i:D5}" }, ct);
                latencies[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
        }, ct)));
    }

    /// <summary>What every create would cost without group commit: one fsynced transaction per row.</summary>
    private static double PlainInsertsPerSecond(int count)
    {
        var dir = Directory.CreateTempSubdirectory("kumo-bench-sqlite-").FullName;
        try
        {
            using var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path.Combine(dir, "plain.db"), Pooling = false }.ToString());
            c.Open();
            using (var setup = c.CreateCommand())
            {
                setup.CommandText = """
                    PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                    CREATE TABLE instances (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, node_id TEXT, state TEXT NOT NULL, created_at TEXT NOT NULL);
                    """;
                setup.ExecuteNonQuery();
            }
            using var insert = c.CreateCommand();
            insert.CommandText = "INSERT INTO instances (id, name, node_id, state, created_at) VALUES ($id, $name, 'sim-0000', 'creating', $at)";
            var id = insert.Parameters.Add("$id", SqliteType.Text);
            var name = insert.Parameters.Add("$name", SqliteType.Text);
            var at = insert.Parameters.Add("$at", SqliteType.Text);
            var start = Stopwatch.GetTimestamp();
            for (var i = 0; i < count; i++)
            {
                using var tx = c.BeginTransaction();
                insert.Transaction = tx;
                id.Value = Guid.NewGuid().ToString("N");
                name.Value = $"p-{i:D5}";
                at.Value = DateTimeOffset.UtcNow.ToString("O");
                insert.ExecuteNonQuery();
                tx.Commit();
            }
            return count / Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
