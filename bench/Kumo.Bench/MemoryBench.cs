using System.Diagnostics;

namespace Kumo.Bench;

/// <summary>
/// kumod's resident memory (all-in-one, TCG): idle, then with 3 guests running. The agent's own cost per guest is
/// set against what each guest's QEMU process holds.
/// </summary>
internal static class MemoryBench
{
    public const string Name = "memory";

    private const int Guests = 3;
    private const double MiB = 1024 * 1024;

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        const string baseline = "RSS of one guest's qemu-system-x86_64 process (256 MiB guest, TCG)";
        if (!Repo.HasQemu()) return new BenchResult(Name, baseline) { Skipped = "qemu-system-x86_64/qemu-img not installed (apt-get install qemu-system-x86 qemu-utils)" };
        await Repo.EnsureTinyImageAsync(ct);
        await using var kumod = await KumodProcess.StartAsync(Repo.ImagesDir, ct);

        var fresh = await SettledRssAsync(kumod.Pid, ct);
        // One create/delete cycle first, so one-time costs (JIT, connection pools) are not billed to the guests.
        await KumoClient.CreateAndWaitReadyAsync(kumod.Http, "mem-warmup", ct);
        await KumoClient.DeleteAndWaitGoneAsync(kumod.Http, "mem-warmup", ct);
        var idle = await SettledRssAsync(kumod.Pid, ct);

        await Task.WhenAll(Enumerable.Range(0, Guests).Select(i => KumoClient.CreateAndWaitReadyAsync(kumod.Http, $"mem-{i}", ct)));
        var busy = await SettledRssAsync(kumod.Pid, ct);
        var qemu = kumod.QemuPids().Select(KumodProcess.RssBytes).ToList();
        if (qemu.Count != Guests) throw new InvalidOperationException($"found {qemu.Count} qemu processes, expected {Guests}");
        var qemuPerGuest = qemu.Average();
        var perGuest = (busy - idle) / (double)Guests;

        var result = new BenchResult(Name, baseline);
        result.Rows.Add(new("kumod RSS idle (fresh, no guests)", fresh / MiB, "MiB"));
        result.Rows.Add(new("kumod RSS idle (after one create/delete)", idle / MiB, "MiB"));
        result.Rows.Add(new($"kumod RSS with {Guests} guests", busy / MiB, "MiB"));
        result.Rows.Add(new("agent overhead per guest", perGuest / MiB, "MiB", qemuPerGuest / MiB));
        result.Notes.Add($"overhead per guest = (RSS with {Guests} guests - idle after warm-up) / {Guests}; against the fresh idle it is {(busy - fresh) / (double)Guests / MiB:0.0} MiB; "
            + $"qemu RSS per guest {string.Join(", ", qemu.Select(q => $"{q / MiB:0.0}"))} MiB");
        result.Details["kumodRssBytes"] = new { fresh, idle, busy };
        result.Details["qemuRssBytes"] = qemu;
        return result;
    }

    /// <summary>Samples VmRSS every 250 ms until 2 s of samples stay within 1% (at most 20 s); returns the last sample.</summary>
    private static async Task<long> SettledRssAsync(int pid, CancellationToken ct)
    {
        var samples = new List<long>();
        var start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start) < TimeSpan.FromSeconds(20))
        {
            samples.Add(KumodProcess.RssBytes(pid));
            var window = samples.TakeLast(8).ToList();
            if (window.Count == 8 && window.Max() - window.Min() <= window.Max() / 100) break;
            await Task.Delay(250, ct);
        }
        return samples[^1];
    }
}
