using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Kumo.Bench;

/// <summary>
/// kumod's reverse proxy in front of a real container: a busybox httpd serving a 1 KiB file, requested through the
/// proxy's host route and directly on the host port the container publishes, alternating, same client settings.
/// </summary>
internal static class ProxyBench
{
    public const string Name = "proxy";

    private const int Workers = 4;
    private const int Requests = 2000;
    private const int SequentialRequests = 500;
    private const double TargetThroughputRatio = 0.8;

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        const string baseline = "the same GET sent directly to the container's published host port (127.0.0.1:HOSTPORT)";
        if (!File.Exists("/usr/bin/podman")) return new BenchResult(Name, baseline) { Skipped = "podman is not installed (scripts/install-deps.sh)" };
        await Repo.EnsureTinyImageAsync(ct);
        await using var kumod = await KumodProcess.StartAsync(Repo.ImagesDir, ct);
        var body = new string('k', 1024);
        using (var created = await kumod.Http.PostAsJsonAsync("/api/v1/instances", new
        {
            name = "bench-web",
            type = "container",
            image = "busybox",
            memory = "64M",
            ports = new[] { 8080 },
            command = new[] { "sh", "-c", $"mkdir -p /www && printf %s {body} > /www/index.html && exec httpd -f -p 8080 -h /www" },
        }, ct))
        {
            if (!created.IsSuccessStatusCode) throw new InvalidOperationException($"create: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync(ct)}");
        }
        try
        {
            var instance = await WaitRunningAsync(kumod, ct);
            var hostPort = instance.GetProperty("container").GetProperty("ports")[0].GetProperty("hostPort").GetInt32();
            var host = new Uri(instance.GetProperty("urls")[0].GetString()!).Host;
            var direct = new Target($"http://127.0.0.1:{hostPort}/", null);
            var proxied = new Target($"http://127.0.0.1:{kumod.ProxyPort}/", host);
            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, MaxConnectionsPerServer = Workers });

            // The route appears within a second of the container running; then warm both paths (JIT, connections).
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (await GetAsync(http, proxied, ct) != HttpStatusCode.OK)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("the proxy route never answered 200");
                await Task.Delay(100, ct);
            }
            await LoadAsync(http, direct, Requests / 4, Workers, ct);
            await LoadAsync(http, proxied, Requests / 4, Workers, ct);
            await Task.Delay(1000, ct);   // tier-1 JIT waits for a quiet 100 ms

            // Alternating halves, so both sides see about the same machine.
            var d1 = await LoadAsync(http, direct, Requests / 2, Workers, ct);
            var p1 = await LoadAsync(http, proxied, Requests / 2, Workers, ct);
            var d2 = await LoadAsync(http, direct, Requests / 2, Workers, ct);
            var p2 = await LoadAsync(http, proxied, Requests / 2, Workers, ct);
            var (dLoad, pLoad) = (Load.Merge(d1, d2), Load.Merge(p1, p2));
            var dSeq = await LoadAsync(http, direct, SequentialRequests, 1, ct);
            var pSeq = await LoadAsync(http, proxied, SequentialRequests, 1, ct);

            var result = new BenchResult(Name, baseline);
            var ratio = pLoad.PerSecond / dLoad.PerSecond;
            result.Rows.Add(new($"GET 1 KiB x{Requests:N0}, {Workers} workers", pLoad.PerSecond, "/s", dLoad.PerSecond, $">={TargetThroughputRatio:0.0}x", ratio >= TargetThroughputRatio));
            result.Rows.Add(new("  p50", pLoad.P50, "ms", dLoad.P50));
            result.Rows.Add(new("  p99", pLoad.P99, "ms", dLoad.P99));
            result.Rows.Add(new($"GET 1 KiB x{SequentialRequests}, one at a time: p50", pSeq.P50, "ms", dSeq.P50));
            result.Rows.Add(new("  p99", pSeq.P99, "ms", dSeq.P99));
            result.Rows.Add(new("  extra per request (p50 difference)", pSeq.P50 - dSeq.P50, "ms"));
            result.Notes.Add($"busybox httpd (one process per connection) in a runc container; client, kumod and the container share the {Environment.ProcessorCount} cores");
            result.Notes.Add($"proxy: host route {host} on 127.0.0.1:{kumod.ProxyPort}; direct: 127.0.0.1:{hostPort}");
            foreach (var (label, load) in new[] { ("direct", dLoad), ("proxied", pLoad), ("directSequential", dSeq), ("proxiedSequential", pSeq) })
                result.Details[label] = new { load.Count, load.PerSecond, load.P50, load.P99, load.Errors };
            if (dLoad.Errors + pLoad.Errors + dSeq.Errors + pSeq.Errors > 0)
                throw new InvalidOperationException($"non-200 answers: direct {dLoad.Errors + dSeq.Errors}, proxied {pLoad.Errors + pSeq.Errors}");
            return result;
        }
        finally
        {
            // Containers run under conmon, outside kumod's process tree: remove it through kumod before kumod goes.
            await RemoveAsync(kumod);
        }
    }

    private sealed record Target(string Url, string? Host);

    private sealed record Load(int Count, double Seconds, double[] Latencies, int Errors)
    {
        public double PerSecond => Count / Seconds;
        public double P50 => Stats.Percentile(Latencies, 50);
        public double P99 => Stats.Percentile(Latencies, 99);

        public static Load Merge(Load a, Load b) => new(a.Count + b.Count, a.Seconds + b.Seconds, [.. a.Latencies, .. b.Latencies], a.Errors + b.Errors);
    }

    private static async Task<HttpStatusCode> GetAsync(HttpClient http, Target target, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, target.Url);
        if (target.Host is not null) request.Headers.Host = target.Host;
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, ct);
            await response.Content.ReadAsByteArrayAsync(ct);
            return response.StatusCode;
        }
        catch (HttpRequestException)
        {
            return 0;
        }
    }

    private static async Task<Load> LoadAsync(HttpClient http, Target target, int count, int workers, CancellationToken ct)
    {
        var latencies = new double[count];
        var next = -1;
        var errors = 0;
        var start = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                var t0 = Stopwatch.GetTimestamp();
                var status = await GetAsync(http, target, ct);
                latencies[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                if (status != HttpStatusCode.OK) Interlocked.Increment(ref errors);
            }
        }, ct)));
        return new Load(count, Stopwatch.GetElapsedTime(start).TotalSeconds, latencies, errors);
    }

    private static async Task<JsonElement> WaitRunningAsync(KumodProcess kumod, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            var instance = await kumod.Http.GetFromJsonAsync<JsonElement>("/api/v1/instances/bench-web", ct);
            var state = instance.GetProperty("state").GetString();
            if (state == "running") return instance;
            if (state == "error" || DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"the container did not run: {state} {instance.GetRawText()} {KumodProcess.Tail(kumod.LogPath)}");
            await Task.Delay(100, ct);
        }
    }

    private static async Task RemoveAsync(KumodProcess kumod)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            using (await kumod.Http.DeleteAsync("/api/v1/instances/bench-web?force=true", cts.Token))
            {
            }
            while (true)
            {
                using var r = await kumod.Http.GetAsync("/api/v1/instances/bench-web", cts.Token);
                if (r.StatusCode == HttpStatusCode.NotFound) return;
                await Task.Delay(200, cts.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or HttpRequestException)
        {
            await Console.Error.WriteLineAsync($"[bench] proxy: could not remove container bench-web ({e.Message}); podman rm it by hand");
        }
    }
}
