using System.Text.Json.Nodes;
using Kumo.Agent.Qemu;
using Kumo.Protocol;

namespace Kumo.Agent.Metrics;

/// <summary>
/// Samples one running guest: the QEMU process's CPU time and resident memory from procfs, its disk file's size, block
/// I/O from QMP, and network counters of the tap devices QEMU holds open (found through /proc/PID/fdinfo, so any
/// network backend that hands QEMU a tap is covered).
/// </summary>
public sealed class GuestSampler(QemuDriver driver)
{
    /// <summary>QMP is asked with a short deadline: a busy guest must not stall the node's sample.</summary>
    private static readonly TimeSpan QmpTimeout = TimeSpan.FromSeconds(2);

    private static readonly Lazy<string> BootId = new(() =>
        File.Exists("/proc/sys/kernel/random/boot_id") ? File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim() : "unknown");

    /// <summary>Null when the guest is not running (or exited while it was being sampled).</summary>
    public async Task<GuestSample?> SampleAsync(string id, CancellationToken ct)
    {
        var pid = driver.Inspect(id).Pid;
        if (pid is null) return null;
        ProcFs.ProcessTimes times;
        long rss;
        try
        {
            times = ProcFs.ParsePidStat(await File.ReadAllTextAsync($"/proc/{pid}/stat", ct));
            rss = ProcFs.ParseStatmResident(await File.ReadAllTextAsync($"/proc/{pid}/statm", ct), Environment.SystemPageSize);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        var disk = new FileInfo(driver.DiskPath(id));
        var (read, written) = await BlockStatsAsync(id, ct);
        var sample = new GuestSample
        {
            InstanceId = id,
            ProcessKey = $"{BootId.Value}/{pid}/{times.StartTicks}",
            CpuSeconds = times.CpuSeconds,
            MemoryRssBytes = rss,
            DiskAllocatedBytes = disk.Exists ? disk.Length : 0,
            DiskReadBytes = read,
            DiskWriteBytes = written,
        };
        var taps = Taps(pid.Value);
        if (taps.Count > 0)
        {
            sample.HasNet = true;
            foreach (var tap in taps)
            {
                // The tap's receive is what the guest sent, and the other way round: report the guest's view.
                sample.NetRxBytes += ReadCounter(tap, "tx_bytes");
                sample.NetTxBytes += ReadCounter(tap, "rx_bytes");
            }
        }
        return sample;
    }

    private async Task<(long Read, long Written)> BlockStatsAsync(string id, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(QmpTimeout);
        try
        {
            await using var qmp = await QmpClient.ConnectAsync(driver.QmpSocket(id), timeout.Token);
            var devices = await qmp.ExecuteAsync("query-blockstats", null, timeout.Token) as JsonArray ?? [];
            long read = 0, written = 0;
            foreach (var d in devices)
            {
                read += d?["stats"]?["rd_bytes"]?.GetValue<long>() ?? 0;
                written += d?["stats"]?["wr_bytes"]?.GetValue<long>() ?? 0;
            }
            return (read, written);
        }
        catch (Exception e) when (e is IOException or QmpException or System.Net.Sockets.SocketException
            || e is OperationCanceledException && !ct.IsCancellationRequested)
        {
            return (-1, -1);
        }
    }

    /// <summary>Names of the tap devices among the process's open descriptors.</summary>
    internal static IReadOnlyList<string> Taps(int pid)
    {
        var result = new List<string>();
        try
        {
            foreach (var fd in Directory.EnumerateFiles($"/proc/{pid}/fdinfo"))
            {
                try
                {
                    if (ProcFs.ParseTunInterface(File.ReadAllText(fd)) is { } name && Directory.Exists($"/sys/class/net/{name}"))
                        result.Add(name);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // The descriptor closed while we looked.
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
        return result.Distinct(StringComparer.Ordinal).ToList();
    }

    private static long ReadCounter(string iface, string counter)
    {
        try
        {
            return long.Parse(File.ReadAllText($"/sys/class/net/{iface}/statistics/{counter}").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or FormatException)
        {
            return 0;
        }
    }
}
