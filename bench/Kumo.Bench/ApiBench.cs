using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Instances;

namespace Kumo.Bench;

/// <summary>
/// REST read throughput of an in-process server holding 1,000 instance records: GET one instance and GET the list,
/// each against a trivial endpoint on the same server (GET /api/v1) as the baseline.
/// </summary>
internal static class ApiBench
{
    public const string Name = "api";

    private const int Instances = 1000;
    private const int Workers = 8;
    private const int Gets = 20_000;
    private const int Lists = 500;
    private const double TargetGetsPerSecond = 5000;

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        await using var server = await InProcessServer.StartAsync(ct);
        await server.Get<NodeService>().RegisterAsync("bench-node", 4096, 4 * ByteSize.TiB, "tcg", new Dictionary<string, string>(), "bench", ct);
        var instances = server.Get<InstanceService>();
        await Parallel.ForEachAsync(Enumerable.Range(0, Instances), new ParallelOptions { MaxDegreeOfParallelism = 64, CancellationToken = ct },
            async (i, c) => await instances.CreateAsync(server.Admin, "admin", new InstancesPost { Name = InstanceName(i) }, c));

        using var http = new HttpClient(KumodTls.Handler(server.StateDir, Workers))
        {
            BaseAddress = server.Api,
        };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", server.Token);
        var listed = await http.GetFromJsonAsync<JsonElement>("/api/v1/instances", ct);
        if (listed.GetArrayLength() != Instances) throw new InvalidOperationException($"the list has {listed.GetArrayLength()} instances, expected {Instances}");

        Func<int, string> trivialPath = _ => "/api/v1", getPath = i => $"/api/v1/instances/{InstanceName(i * 7919 % Instances)}", listPath = _ => "/api/v1/instances";
        // Warm every path before measuring any, so the baseline (measured first) does not pay for JIT tier-up alone.
        foreach (var (path, count) in new[] { (trivialPath, Gets / 5), (getPath, Gets / 5), (listPath, Lists / 5) })
            await RunAsync(http, path, count, new double[count], Workers, ct);
        await Task.Delay(1000, ct);   // tier-1 JIT waits for a quiet 100 ms
        var trivial = await LoadAsync(http, trivialPath, Gets, Workers, ct);
        var get = await LoadAsync(http, getPath, Gets, Workers, ct);
        var list = await LoadAsync(http, listPath, Lists, Workers, ct);

        var result = new BenchResult(Name, $"GET /api/v1 (server info) on the same server, {Gets:N0} requests");
        result.Rows.Add(new($"GET /instances/{{name}} x{Gets:N0}", get.PerSecond, "/s", trivial.PerSecond, $">={TargetGetsPerSecond:N0}/s", get.PerSecond >= TargetGetsPerSecond));
        result.Rows.Add(new("  get p50", get.P50, "ms", trivial.P50));
        result.Rows.Add(new("  get p99", get.P99, "ms", trivial.P99));
        result.Rows.Add(new($"GET /instances (1,000 rows) x{Lists}", list.PerSecond, "/s", trivial.PerSecond));
        result.Rows.Add(new("  list p50", list.P50, "ms", trivial.P50));
        result.Rows.Add(new("  list p99", list.P99, "ms", trivial.P99));
        result.Notes.Add($"{Workers} concurrent workers on one HttpClient (HTTP/1.1 keep-alive), client and server share the {Environment.ProcessorCount} cores; list body {listed.GetRawText().Length / 1024} KiB");
        foreach (var (label, load) in new[] { ("trivial", trivial), ("get", get), ("list", list) })
            result.Details[label] = new { load.Count, load.PerSecond, load.P50, load.P99, load.Errors };
        if (trivial.Errors + get.Errors + list.Errors > 0)
            throw new InvalidOperationException($"non-200 answers: trivial {trivial.Errors}, get {get.Errors}, list {list.Errors}");
        return result;
    }

    private static string InstanceName(int i) => $"api-{i:D4}";

    internal sealed record Load(int Count, double PerSecond, double P50, double P99, int Errors);

    /// <summary>Sends <paramref name="count"/> GETs from <paramref name="workers"/> loops.</summary>
    internal static async Task<Load> LoadAsync(HttpClient http, Func<int, string> path, int count, int workers, CancellationToken ct) =>
        (await LoadWithLatenciesAsync(http, path, count, workers, ct)).Load;

    /// <summary>As <see cref="LoadAsync"/>, also returning every request's latency (ms).</summary>
    internal static async Task<(Load Load, double[] Latencies)> LoadWithLatenciesAsync(HttpClient http, Func<int, string> path, int count, int workers, CancellationToken ct)
    {
        var latencies = new double[count];
        var start = Stopwatch.GetTimestamp();
        var errors = await RunAsync(http, path, count, latencies, workers, ct);
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return (new Load(count, count / seconds, Stats.Percentile(latencies, 50), Stats.Percentile(latencies, 99), errors), latencies);
    }

    private static async Task<int> RunAsync(HttpClient http, Func<int, string> path, int count, double[] latencies, int workers, CancellationToken ct)
    {
        var next = -1;
        var errors = 0;
        await Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                var t0 = Stopwatch.GetTimestamp();
                using var response = await http.GetAsync(path(i), HttpCompletionOption.ResponseContentRead, ct);
                latencies[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                if (response.StatusCode != HttpStatusCode.OK) Interlocked.Increment(ref errors);
            }
        }, ct)));
        return errors;
    }
}
