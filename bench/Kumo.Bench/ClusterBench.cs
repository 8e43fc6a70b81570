using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Kumo.Bench;

/// <summary>
/// Create-to-ready of a virtual cluster (1 frontend + 4 nodes on a private network, one request) against five single
/// VMs created one after the other through the same kumod, each waited for before the next. Runs alternate.
/// </summary>
internal static class ClusterBench
{
    public const string Name = "cluster";

    private const int Nodes = 4;
    private const string Memory = "128M";

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        const string baseline = "5 sequential single-VM creates (create->ready each, 128 MiB tiny guests) through the same kumod";
        if (!Repo.HasQemu()) return new BenchResult(Name, baseline) { Skipped = "qemu-system-x86_64/qemu-img not installed (apt-get install qemu-system-x86 qemu-utils)" };
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
            return new BenchResult(Name, baseline) { Skipped = "tenant networks need root (bridges, dnsmasq, nftables)" };
        await Repo.EnsureTinyImageAsync(ct);
        await using var kumod = await KumodProcess.StartAsync(Repo.ImagesDir, ct);

        // Five TCG guests boot per run: three runs keep the benchmark within a few minutes on two cores.
        var runs = Math.Clamp(options.Runs, 1, 3);
        var cluster = new List<double>();
        var sequential = new List<double>();
        for (var i = 0; i < runs; i++)
        {
            sequential.Add(await SequentialAsync(kumod.Http, $"seq{i}", ct));
            cluster.Add(await ClusterAsync(kumod.Http, $"bench{i}", ct));
        }

        var (cMed, sMed) = (Stats.Median(cluster), Stats.Median(sequential));
        var result = new BenchResult(Name, baseline);
        result.Rows.Add(new($"cluster create->ready (1+{Nodes}), median of {runs}", cMed, "ms", sMed, "<1.00x", cMed < sMed));
        result.Rows.Add(new($"best of {runs}", cluster.Min(), "ms", sequential.Min()));
        result.Notes.Add("the cluster's members are placed in one write and boot side by side; the baseline waits for each VM before the next, as a script calling `kumo vm create` five times would");
        result.Notes.Add($"per run, cluster: {string.Join(", ", cluster.Select(F))} ms; sequential: {string.Join(", ", sequential.Select(F))} ms");
        result.Details["clusterMs"] = cluster.Select(v => Math.Round(v, 1)).ToList();
        result.Details["sequentialMs"] = sequential.Select(v => Math.Round(v, 1)).ToList();
        return result;
    }

    private static string F(double v) => v.ToString("0", CultureInfo.InvariantCulture);

    private static async Task<double> SequentialAsync(HttpClient http, string prefix, CancellationToken ct)
    {
        var names = Enumerable.Range(0, Nodes + 1).Select(i => $"{prefix}-{i}").ToList();
        var start = Stopwatch.GetTimestamp();
        foreach (var name in names)
            await KumoClient.PostAndFollowAsync(http, "/api/v1/instances", new { name, memory = Memory }, $"create {name}", ct);
        var ms = KumoClient.Ms(start);
        foreach (var name in names) await KumoClient.DeleteAndWaitGoneAsync(http, name, ct);
        return ms;
    }

    private static async Task<double> ClusterAsync(HttpClient http, string name, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        await KumoClient.PostAndFollowAsync(http, "/api/v1/clusters",
            new { name, nodes = Nodes, frontendMemory = Memory, nodeMemory = Memory, exposePort = 0 }, $"cluster create {name}", ct);
        var ms = KumoClient.Ms(start);
        using var del = await http.DeleteAsync($"/api/v1/clusters/{name}", ct);
        if (del.StatusCode != HttpStatusCode.Accepted)
            throw new InvalidOperationException($"cluster delete {name}: {(int)del.StatusCode} {await del.Content.ReadAsStringAsync(ct)}");
        await KumoClient.FollowAsync(http, await del.Content.ReadFromJsonAsync<JsonElement>(ct), Stopwatch.GetTimestamp(), $"cluster delete {name}", ct);
        return ms;
    }
}
