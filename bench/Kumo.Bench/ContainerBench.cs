using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Kumo.Agent.Containers;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kumo.Bench;

/// <summary>
/// Create+start of a busybox container until its process runs: through Kumo (POST /instances, then the instance
/// reads running: scheduler, database, agent reconcile, Docker API on podman's service) against a direct
/// <c>podman run -d</c> of the same image with the same limits on the agent's own podman storage. Alternating, so both
/// see the same machine.
/// </summary>
internal static class ContainerBench
{
    public const string Name = "containers";

    private const int Rounds = 10;
    private const double TargetRatio = 1.15;

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        const string baseline = "podman run -d of the same image with the same limits, on the agent's podman storage (returns once the process runs)";
        if (!File.Exists("/usr/bin/podman")) return new BenchResult(Name, baseline) { Skipped = "podman is not installed (scripts/install-deps.sh)" };
        await Repo.EnsureTinyImageAsync(ct);
        await using var kumod = await KumodProcess.StartAsync(Repo.ImagesDir, ct);
        var engine = new ContainerEngine(Path.Combine(kumod.StateDir, "agent"), NullLogger<ContainerEngine>.Instance);
        var kumo = new List<double>();
        var direct = new List<double>();
        try
        {
            // Warm-up: the first container makes the node's busybox image and starts the agent's podman service.
            await KumoOnceAsync(kumod, "bench-warm", ct);
            await RemoveKumoAsync(kumod, "bench-warm", ct);
            await DirectOnceAsync(engine, "bench-direct-warm", ct);
            await RemoveDirectAsync(engine, "bench-direct-warm", ct);
            for (var i = 0; i < Rounds; i++)
            {
                var name = $"bench-ct-{i.ToString(CultureInfo.InvariantCulture)}";
                kumo.Add(await KumoOnceAsync(kumod, name, ct));
                direct.Add(await DirectOnceAsync(engine, $"bench-direct-{i.ToString(CultureInfo.InvariantCulture)}", ct));
                await RemoveKumoAsync(kumod, name, ct);
                await RemoveDirectAsync(engine, $"bench-direct-{i.ToString(CultureInfo.InvariantCulture)}", ct);
            }
        }
        finally
        {
            await engine.DisposeAsync();
        }
        var result = new BenchResult(Name, baseline);
        var (k50, d50) = (Stats.Percentile([.. kumo], 50), Stats.Percentile([.. direct], 50));
        result.Rows.Add(new($"create+start until running, median of {Rounds}", k50, "ms", d50, $"<={TargetRatio:0.00}x", k50 / d50 <= TargetRatio));
        result.Rows.Add(new("  max", kumo.Max(), "ms", direct.Max()));
        result.Notes.Add("Kumo: POST /api/v1/instances (busybox, sleep, 64M) until GET shows state running, polled every 10 ms");
        result.Notes.Add("direct: podman run -d --memory 64m --memory-swap 64m --pids-limit 4096 --cap-drop NET_RAW --security-opt no-new-privileges");
        result.Details["kumoMs"] = kumo;
        result.Details["directMs"] = direct;
        return result;
    }

    private static async Task<double> KumoOnceAsync(KumodProcess kumod, string name, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        using (var created = await kumod.Http.PostAsJsonAsync("/api/v1/instances", new
        {
            name,
            type = "container",
            image = "busybox",
            memory = "64M",
            command = new[] { "sleep", "600" },
        }, ct))
        {
            if (!created.IsSuccessStatusCode) throw new InvalidOperationException($"create: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync(ct)}");
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            var instance = await kumod.Http.GetFromJsonAsync<JsonElement>($"/api/v1/instances/{name}", ct);
            var state = instance.GetProperty("state").GetString();
            if (state == "running") return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (state == "error" || DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"the container did not run: {instance.GetRawText()} {KumodProcess.Tail(kumod.LogPath)}");
            await Task.Delay(10, ct);
        }
    }

    private static async Task<double> DirectOnceAsync(ContainerEngine engine, string name, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        var r = await engine.PodmanAsync(["run", "-d", "--name", name, "--memory", "64m", "--memory-swap", "64m", "--pids-limit", "4096",
            "--cap-drop", "NET_RAW", "--security-opt", "no-new-privileges", BaseImages.BusyboxReference, "sleep", "600"], ct);
        var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        if (r.ExitCode != 0) throw new InvalidOperationException($"podman run -d: {r.Stderr.Trim()}");
        return ms;
    }

    private static async Task RemoveDirectAsync(ContainerEngine engine, string name, CancellationToken ct) =>
        await engine.PodmanAsync(["rm", "-f", "-t", "0", name], ct);

    private static async Task RemoveKumoAsync(KumodProcess kumod, string name, CancellationToken ct)
    {
        using (await kumod.Http.DeleteAsync($"/api/v1/instances/{name}?force=true", ct))
        {
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            using var r = await kumod.Http.GetAsync($"/api/v1/instances/{name}", ct);
            if (r.StatusCode == HttpStatusCode.NotFound) return;
            await Task.Delay(50, ct);
        }
        throw new TimeoutException($"container {name} was not removed within 60 s");
    }
}
