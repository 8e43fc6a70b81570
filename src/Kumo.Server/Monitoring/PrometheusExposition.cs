using Kumo.Core;
using Prometheus;

namespace Kumo.Server.Monitoring;

/// <summary>
/// GET /metrics in the Prometheus text format, written by prometheus-net. Each scrape builds a fresh registry holding
/// only the series the caller may see (the library's global registry is never used), from the latest sample of each
/// node and guest in <see cref="MetricsStore"/>. Counters are the agents' cumulative values: a guest's counters restart
/// at 0 when its QEMU process restarts, which Prometheus's rate() reads as a counter reset.
/// The instance's name is the label instance_name, not instance: Prometheus sets instance to the scraped target and
/// would rename ours to exported_instance.
/// </summary>
public static class PrometheusExposition
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private static readonly string[] NodeLabels = ["node"];
    private static readonly string[] InstanceLabels = ["node", "instance_name", "project", "owner"];

    public static async Task WriteAsync(Stream output, IReadOnlyList<Node> nodes, IReadOnlyList<MonitoredInstance> instances, MetricsStore store,
        CancellationToken ct)
    {
        var registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(registry);

        var nodeCpus = f.CreateGauge("kumo_node_cpus", "Online CPUs of the node.", NodeLabels);
        var nodeCpu = f.CreateCounter("kumo_node_cpu_seconds_total", "Seconds the node's CPUs spent, by mode (busy, idle; idle includes iowait).",
            ["node", "mode"]);
        var nodeMemTotal = f.CreateGauge("kumo_node_memory_total_bytes", "Memory of the node.", NodeLabels);
        var nodeMemAvailable = f.CreateGauge("kumo_node_memory_available_bytes", "Memory the kernel reports available (MemAvailable).", NodeLabels);
        var nodeDiskTotal = f.CreateGauge("kumo_node_disk_total_bytes", "Size of the file system holding the agent's state directory.", NodeLabels);
        var nodeDiskFree = f.CreateGauge("kumo_node_disk_free_bytes", "Free space on the file system holding the agent's state directory.", NodeLabels);
        var nodeRx = f.CreateCounter("kumo_node_network_receive_bytes_total", "Bytes received on the node's physical interfaces.", NodeLabels);
        var nodeTx = f.CreateCounter("kumo_node_network_transmit_bytes_total", "Bytes sent on the node's physical interfaces.", NodeLabels);
        var nodeSampled = f.CreateGauge("kumo_node_last_sample_timestamp_seconds", "When kumod received the node's latest sample (Unix time).", NodeLabels);

        var cpu = f.CreateCounter("kumo_instance_cpu_seconds_total", "CPU time of the guest's QEMU process (vCPUs plus emulation); restarts at 0 with the guest.",
            InstanceLabels);
        var vcpus = f.CreateGauge("kumo_instance_vcpus", "vCPUs allocated to the instance.", InstanceLabels);
        var memAllocated = f.CreateGauge("kumo_instance_memory_allocated_bytes", "Memory allocated to the instance.", InstanceLabels);
        var rss = f.CreateGauge("kumo_instance_memory_rss_bytes", "Resident memory of the guest's QEMU process on the host.", InstanceLabels);
        var disk = f.CreateGauge("kumo_instance_disk_allocated_bytes", "Size of the instance's disk file on the host.", InstanceLabels);
        var diskRead = f.CreateCounter("kumo_instance_disk_read_bytes_total", "Bytes the guest read from its disks (QMP blockstats).", InstanceLabels);
        var diskWrite = f.CreateCounter("kumo_instance_disk_written_bytes_total", "Bytes the guest wrote to its disks (QMP blockstats).", InstanceLabels);
        var netRx = f.CreateCounter("kumo_instance_network_receive_bytes_total", "Bytes the guest received on its tap devices.", InstanceLabels);
        var netTx = f.CreateCounter("kumo_instance_network_transmit_bytes_total", "Bytes the guest sent on its tap devices.", InstanceLabels);

        foreach (var n in nodes)
        {
            var points = store.Node(n.Id);
            if (points.Count == 0) continue;
            var (at, s) = (points[^1].At, points[^1].Sample);
            nodeCpus.WithLabels(n.Name).Set(s.Cpus);
            nodeCpu.WithLabels(n.Name, "busy").IncTo(s.CpuBusySeconds);
            nodeCpu.WithLabels(n.Name, "idle").IncTo(s.CpuIdleSeconds);
            nodeMemTotal.WithLabels(n.Name).Set(s.MemoryTotalBytes);
            nodeMemAvailable.WithLabels(n.Name).Set(s.MemoryAvailableBytes);
            nodeDiskTotal.WithLabels(n.Name).Set(s.DiskTotalBytes);
            nodeDiskFree.WithLabels(n.Name).Set(s.DiskFreeBytes);
            nodeRx.WithLabels(n.Name).IncTo(s.NetRxBytes);
            nodeTx.WithLabels(n.Name).IncTo(s.NetTxBytes);
            nodeSampled.WithLabels(n.Name).Set(at.ToUnixTimeMilliseconds() / 1000.0);
        }

        foreach (var i in instances)
        {
            string[] labels = [i.Node ?? "", i.Name, i.Project, i.Owner ?? ""];
            vcpus.WithLabels(labels).Set(i.Cpus);
            memAllocated.WithLabels(labels).Set(i.MemoryBytes);
            var points = store.Guest(i.Id);
            // Only a guest that is running now has live figures; a stopped one keeps its allocation series only.
            if (points.Count == 0 || i.State != InstanceStates.Running) continue;
            var s = points[^1].Sample;
            cpu.WithLabels(labels).IncTo(s.CpuSeconds);
            rss.WithLabels(labels).Set(s.MemoryRssBytes);
            disk.WithLabels(labels).Set(s.DiskAllocatedBytes);
            if (s.DiskReadBytes >= 0)
            {
                diskRead.WithLabels(labels).IncTo(s.DiskReadBytes);
                diskWrite.WithLabels(labels).IncTo(s.DiskWriteBytes);
            }
            if (s.HasNet)
            {
                netRx.WithLabels(labels).IncTo(s.NetRxBytes);
                netTx.WithLabels(labels).IncTo(s.NetTxBytes);
            }
        }

        await registry.CollectAndExportAsTextAsync(output, ExpositionFormat.PrometheusText, ct);
    }
}
