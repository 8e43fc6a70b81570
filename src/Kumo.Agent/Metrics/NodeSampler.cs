using Kumo.Protocol;

namespace Kumo.Agent.Metrics;

/// <summary>Samples the node from procfs and statfs: CPU times, memory, the state directory's file system, network.</summary>
public sealed class NodeSampler(string stateDir, string procRoot = "/proc", string sysRoot = "/sys")
{
    public NodeSample Sample()
    {
        var cpu = ProcFs.ParseStat(File.ReadAllText(Path.Combine(procRoot, "stat")));
        var (memTotal, memAvailable) = ProcFs.ParseMeminfo(File.ReadAllText(Path.Combine(procRoot, "meminfo")));
        var drive = new DriveInfo(stateDir);
        var (rx, tx) = NetTotals();
        return new NodeSample
        {
            CpuBusySeconds = cpu.BusySeconds,
            CpuIdleSeconds = cpu.IdleSeconds,
            Cpus = cpu.Cpus,
            MemoryTotalBytes = memTotal,
            MemoryAvailableBytes = memAvailable,
            DiskTotalBytes = drive.TotalSize,
            DiskFreeBytes = drive.AvailableFreeSpace,
            NetRxBytes = rx,
            NetTxBytes = tx,
        };
    }

    /// <summary>
    /// Sums the interfaces backed by a device: bridges, taps and veths Kumo makes would count guest traffic a second
    /// time. Without any such interface (a namespace with only veths), all but lo.
    /// </summary>
    private (long Rx, long Tx) NetTotals()
    {
        var all = ProcFs.ParseNetDev(File.ReadAllText(Path.Combine(procRoot, "net", "dev")));
        var physical = all.Where(i => Directory.Exists(Path.Combine(sysRoot, "class", "net", i.Key, "device"))).ToList();
        var counted = physical.Count > 0 ? physical : all.Where(i => i.Key != "lo").ToList();
        return (counted.Sum(i => i.Value.Rx), counted.Sum(i => i.Value.Tx));
    }
}
