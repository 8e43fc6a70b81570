using System.Globalization;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Instances;

namespace Kumo.Bench;

/// <summary>
/// What authentication, authorization and audit cost an authorized read: GET /api/v1/instances/{name} against two
/// in-process servers of the same build, one normal (bearer token, policy decision, audit entry made durable before
/// the answer) and one started with --dev-no-auth-no-audit. A third, diagnostic server does all of AAA but does not
/// make the journal durable, which shows how much of the cost is the durable write itself. Rounds alternate on, off,
/// not durable, not durable, off, on, so drift in the machine's load falls on every side alike.
/// </summary>
internal static class AaaBench
{
    public const string Name = "aaa";

    private const int Instances = 200;
    private static readonly int[] WorkerCounts = [8, 16, 32, 64, 128];
    private const int RoundPairs = 3;
    private const int ReadsPerRound = 3000;

    // The issue's target: AAA costs under 15% of read throughput (checked at every caller count).
    private const double MinThroughputRatio = 0.85;

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        await using var on = await StartAsync(devNoAuthNoAudit: false, auditWithoutSync: false, ct);
        await using var off = await StartAsync(devNoAuthNoAudit: true, auditWithoutSync: false, ct);
        await using var noSync = await StartAsync(devNoAuthNoAudit: false, auditWithoutSync: true, ct);
        using var onHttp = Client(on);
        using var offHttp = Client(off);
        using var noSyncHttp = Client(noSync);
        var clients = new Dictionary<Setup, HttpClient> { [Setup.On] = onHttp, [Setup.Off] = offHttp, [Setup.NotDurable] = noSyncHttp };
        Func<int, string> path = i => $"/api/v1/instances/{InstanceName(i * 7919 % Instances)}";

        // Warm both (JIT, connection pools, the token cache) before measuring either: rounds kept getting faster for
        // about 15,000 reads, so anything shorter measured the warm-up.
        foreach (var http in clients.Values)
        {
            for (var i = 0; i < 6; i++)
                await ApiBench.LoadAsync(http, path, ReadsPerRound, WorkerCounts[0], ct);
        }
        await Task.Delay(1000, ct);   // tier-1 JIT waits for a quiet 100 ms

        var result = new BenchResult(Name, "the same reads against the same build started with --dev-no-auth-no-audit (no token, no policy, no audit)");
        var log = on.Get<Kumo.Server.Audit.AuditLog>();
        foreach (var workers in WorkerCounts)
        {
            // A round per side at this concurrency first, unmeasured: the first one at a new level is slow on both sides.
            foreach (var http in clients.Values)
                await ApiBench.LoadAsync(http, path, ReadsPerRound, workers, ct);
            var (entries0, batches0) = (log.JournalSeq, log.JournalBatches);
            var sides = await MeasureAsync(clients, path, workers, ct);
            var perBatch = (log.JournalSeq - entries0) / (double)Math.Max(1, log.JournalBatches - batches0);
            var side = (On: sides[Setup.On], Off: sides[Setup.Off], NotDurable: sides[Setup.NotDurable]);
            var ratio = side.On.PerSecond / side.Off.PerSecond;
            result.Rows.Add(new($"GET /instances/{{name}} with AAA, {workers} callers, x{side.On.Reads:N0}", side.On.PerSecond, "/s", side.Off.PerSecond,
                $">={MinThroughputRatio:0.00}x", ratio >= MinThroughputRatio));
            result.Rows.Add(new("  p50", side.On.P50, "ms", side.Off.P50));
            result.Rows.Add(new("  p99", side.On.P99, "ms", side.Off.P99));
            result.Rows.Add(new("  CPU per read (client and server)", side.On.CpuPerRead, "us", side.Off.CpuPerRead));
            result.Rows.Add(new("  audit entries per durable journal write", perBatch, ""));
            result.Rows.Add(new("  AAA overhead (1 - on/off reads/s)", 100 * (1 - ratio), "%", null, "<15 %", ratio >= MinThroughputRatio));
            result.Rows.Add(new("  diagnostic: AAA with the journal not durable", side.NotDurable.PerSecond, "/s", side.Off.PerSecond));
            result.Notes.Add($"{workers} callers, reads/s per round, on: {string.Join(", ", side.On.Rounds.Select(F))}; off: {string.Join(", ", side.Off.Rounds.Select(F))}; "
                + $"not durable: {string.Join(", ", side.NotDurable.Rounds.Select(F))}; CPUs busy {side.On.Busy:P0} on, {side.Off.Busy:P0} off, {side.NotDurable.Busy:P0} not durable");
            result.Details[$"workers{workers}"] = new { on = side.On, off = side.Off, notDurable = side.NotDurable, entriesPerDurableWrite = perBatch };
        }

        result.Notes.Add("a request that finds the journal idle writes its batch itself; entries that arrive meanwhile wait, and their batch is queued "
            + "behind the work already waiting for a thread-pool thread, so the busier the server, the more entries share a durable write; "
            + "with few callers the AAA side leaves CPU idle while each read waits for its own durable write (latency), with many the CPUs are saturated on both sides (capacity)");
        var audited = await CountAuditAsync(on, ct);
        var batches = on.Get<Kumo.Server.Audit.AuditLog>().JournalBatches;
        result.Notes.Add($"{RoundPairs * 2} rounds of {ReadsPerRound:N0} reads per side and caller count, alternating on/off/not durable/not durable/off/on; one HttpClient per server (HTTPS, keep-alive); "
            + $"client and the three servers share the {Environment.ProcessorCount} cores; the admin reads on every side");
        result.Notes.Add("diagnostic side: the same build with token, policy and audit entry, whose journal writes are NOT made durable (a bench-only option, never a kumod flag); "
            + "the gap between it and the AAA side is what the durable write before each answer costs on this machine");
        result.Notes.Add($"the AAA side wrote {audited:N0} audit entries, each durable in the audit journal before its answer, in {batches:N0} batches "
            + $"(one durable write each: O_DIRECT|O_DSYNC, {audited / (double)Math.Max(1, batches):0.0} entries per batch on average)");
        result.Details["auditEntries"] = audited;
        result.Details["journalBatches"] = batches;
        return result;
    }

    /// <summary>One side's totals: reads over the summed time of its rounds; percentiles over every read it made.</summary>
    /// <param name="CpuPerRead">Process CPU time (client and both servers) per read, in microseconds.</param>
    /// <param name="Busy">The share of all cores the process kept busy during the side's rounds.</param>
    internal sealed record Side(int Reads, double PerSecond, double P50, double P99, List<double> Rounds, double CpuPerRead, double Busy);

    private enum Setup { On, Off, NotDurable }

    private static readonly Setup[] RoundOrder = [Setup.On, Setup.Off, Setup.NotDurable, Setup.NotDurable, Setup.Off, Setup.On];

    private static async Task<Dictionary<Setup, Side>> MeasureAsync(Dictionary<Setup, HttpClient> clients, Func<int, string> path, int workers, CancellationToken ct)
    {
        var rounds = clients.Keys.ToDictionary(k => k, _ => new List<ApiBench.Load>());
        var latencies = clients.Keys.ToDictionary(k => k, _ => new List<double>());
        var cpu = clients.Keys.ToDictionary(k => k, _ => TimeSpan.Zero);
        var wall = clients.Keys.ToDictionary(k => k, _ => TimeSpan.Zero);
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        for (var pair = 0; pair < RoundPairs; pair++)
        {
            foreach (var setup in RoundOrder)
            {
                self.Refresh();
                var cpu0 = self.TotalProcessorTime;
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                var (load, ms) = await ApiBench.LoadWithLatenciesAsync(clients[setup], path, ReadsPerRound, workers, ct);
                wall[setup] += System.Diagnostics.Stopwatch.GetElapsedTime(started);
                self.Refresh();
                cpu[setup] += self.TotalProcessorTime - cpu0;
                rounds[setup].Add(load);
                latencies[setup].AddRange(ms);
            }
        }
        var errors = rounds.Values.SelectMany(r => r).Sum(r => r.Errors);
        if (errors > 0) throw new InvalidOperationException($"{errors} reads with {workers} workers were not answered 200");
        return clients.Keys.ToDictionary(k => k, k => new Side(rounds[k].Sum(r => r.Count), rounds[k].Sum(r => r.Count) / rounds[k].Sum(r => r.Count / r.PerSecond),
            Stats.Percentile(latencies[k], 50), Stats.Percentile(latencies[k], 99), rounds[k].Select(r => Math.Round(r.PerSecond)).ToList(),
            cpu[k].TotalMicroseconds / rounds[k].Sum(r => r.Count), cpu[k] / wall[k] / Environment.ProcessorCount));
    }

    private static string F(double v) => v.ToString("N0", CultureInfo.InvariantCulture);

    private static string InstanceName(int i) => $"aaa-{i:D4}";

    private static HttpClient Client(InProcessServer server)
    {
        var http = new HttpClient(KumodTls.Handler(server.StateDir, WorkerCounts.Max())) { BaseAddress = server.Api };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", server.Token);
        return http;
    }

    private static async Task<InProcessServer> StartAsync(bool devNoAuthNoAudit, bool auditWithoutSync, CancellationToken ct)
    {
        var server = await InProcessServer.StartAsync(ct, devNoAuthNoAudit, auditWithoutSync);
        try
        {
            await server.Get<NodeService>().RegisterAsync("bench-node", 4096, 4 * ByteSize.TiB, "tcg", new Dictionary<string, string>(), "bench", ct);
            var instances = server.Get<InstanceService>();
            await Parallel.ForEachAsync(Enumerable.Range(0, Instances), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = ct },
                async (i, c) => await instances.CreateAsync(server.Admin, "admin", new InstancesPost { Name = InstanceName(i), Stopped = true }, c));
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    private static async Task<long> CountAuditAsync(InProcessServer server, CancellationToken ct)
    {
        await server.Get<Kumo.Server.Audit.AuditLog>().FlushToTableAsync(ct);
        return await server.Get<Kumo.Server.Storage.Database>().ReadAsync(c => Dapper.SqlMapper.ExecuteScalar<long>(c, "SELECT count(*) FROM audit"), ct);
    }
}
