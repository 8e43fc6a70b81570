using System.Globalization;
using Kumo.Core;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Kumo.Cli;

/// <summary>Monitoring views: `kumo top` and `kumo vm metrics`.</summary>
internal sealed partial class Output
{
    public IRenderable Top(MetricsSummary summary)
    {
        var nodes = Table("NODE", "STATE", "CPU", "MEMORY", "DISK", "NET RX", "NET TX");
        foreach (var n in summary.Nodes)
        {
            var m = n.Metrics;
            AddRow(nodes, n.Name, n.State, Percent(m?.CpuPercent),
                m is null ? null : $"{Size(m.MemoryUsedBytes)}/{Size(m.MemoryTotalBytes)}",
                m is null ? null : $"{Size(m.DiskUsedBytes)}/{Size(m.DiskTotalBytes)}",
                Rate(m?.NetRxBytesPerSecond), Rate(m?.NetTxBytesPerSecond));
        }
        var instances = Table("INSTANCE", "PROJECT", "NODE", "STATE", "CPU", "MEMORY", "DISK", "NET RX", "NET TX");
        foreach (var i in summary.Instances)
        {
            var s = i.State == InstanceStates.Running ? i.Latest : null;
            AddRow(instances, i.Name, i.Project, i.Node, i.State, Percent(s?.CpuPercent),
                s is null ? Size(i.MemoryBytes) : $"{Size(s.MemoryRssBytes)}/{Size(i.MemoryBytes)}",
                s is null ? null : Size(s.DiskAllocatedBytes),
                Rate(s?.NetRxBytesPerSecond), Rate(s?.NetTxBytesPerSecond));
        }
        return new Rows(nodes, new Text("\n"), instances,
            new Text($"\n{Time(summary.At)}  CPU: share of the node's CPUs, or of one host CPU for an instance (200% = two busy). MEMORY: resident/allocated.\n"));
    }

    public IRenderable InstanceMetrics(InstanceMetrics m)
    {
        var table = Table("TIME", "CPU-SECONDS", "CPU", "MEMORY", "DISK", "DISK READ", "DISK WRITTEN", "NET RX", "NET TX");
        foreach (var s in m.Samples)
        {
            AddRow(table, Time(s.At), s.CpuSeconds.ToString("0.00", CultureInfo.InvariantCulture), Percent(s.CpuPercent), Size(s.MemoryRssBytes),
                Size(s.DiskAllocatedBytes), s.DiskReadBytes is { } r ? Size(r) : null, s.DiskWriteBytes is { } w ? Size(w) : null,
                Rate(s.NetRxBytesPerSecond), Rate(s.NetTxBytesPerSecond));
        }
        return table;
    }

    private static string? Percent(double? value) => value?.ToString("0.0", CultureInfo.InvariantCulture) + "%";

    private static string? Rate(double? bytesPerSecond) => bytesPerSecond is { } b ? Size((long)b) + "/s" : null;
}
