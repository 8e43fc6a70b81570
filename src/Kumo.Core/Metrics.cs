namespace Kumo.Core;

/// <summary>The latest sample of a node, with rates from the two samples before it (GET /nodes, GET /metrics).</summary>
public sealed record NodeMetrics
{
    public DateTimeOffset At { get; init; }

    /// <summary>Busy share of all CPUs between the last two samples, 0–100; null after a single sample.</summary>
    public double? CpuPercent { get; init; }

    public int Cpus { get; init; }
    public long MemoryTotalBytes { get; init; }

    /// <summary>Total minus what the kernel reports available (page cache that can be dropped counts as free).</summary>
    public long MemoryUsedBytes { get; init; }

    /// <summary>The file system holding the agent's state directory (where guest disks live).</summary>
    public long DiskTotalBytes { get; init; }

    public long DiskUsedBytes { get; init; }
    public long NetRxBytes { get; init; }
    public long NetTxBytes { get; init; }
    public double? NetRxBytesPerSecond { get; init; }
    public double? NetTxBytesPerSecond { get; init; }
}

/// <summary>One sample of a guest as kumod received it, with rates against the sample before it.</summary>
public sealed record InstanceSample
{
    public DateTimeOffset At { get; init; }

    /// <summary>CPU time of the guest's QEMU process since it started (restarts from 0 when the guest restarts).</summary>
    public double CpuSeconds { get; init; }

    /// <summary>CPU used since the previous sample, as a share of one host CPU (200 = two CPUs busy); null for the first.</summary>
    public double? CpuPercent { get; init; }

    public long MemoryRssBytes { get; init; }
    public long DiskAllocatedBytes { get; init; }

    /// <summary>Block I/O since the guest started; null when QMP did not answer.</summary>
    public long? DiskReadBytes { get; init; }

    public long? DiskWriteBytes { get; init; }

    /// <summary>The guest's network counters (its tap devices); null for guests without a tap.</summary>
    public long? NetRxBytes { get; init; }

    public long? NetTxBytes { get; init; }
    public double? NetRxBytesPerSecond { get; init; }
    public double? NetTxBytesPerSecond { get; init; }
}

/// <summary>GET /instances/{name}/metrics: the recent history kumod keeps in memory, oldest first.</summary>
public sealed record InstanceMetrics
{
    public required string Instance { get; init; }
    public required string Project { get; init; }
    public string? Node { get; init; }

    /// <summary>How often the agent samples.</summary>
    public double IntervalSeconds { get; init; }

    /// <summary>How far back kumod keeps samples.</summary>
    public double HistorySeconds { get; init; }

    public IReadOnlyList<InstanceSample> Samples { get; init; } = [];
}

/// <summary>One line of `kumo top`: an instance the caller may see and its latest sample.</summary>
public sealed record InstanceMetricsSummary
{
    public required string Name { get; init; }
    public required string Project { get; init; }
    public string? Owner { get; init; }
    public string? Node { get; init; }
    public required string State { get; init; }
    public int Cpus { get; init; }
    public long MemoryBytes { get; init; }
    public InstanceSample? Latest { get; init; }
}

/// <summary>GET /api/v1/metrics: the latest sample of every node and of every instance the caller may see.</summary>
public sealed record MetricsSummary
{
    public DateTimeOffset At { get; init; }
    public IReadOnlyList<Node> Nodes { get; init; } = [];
    public IReadOnlyList<InstanceMetricsSummary> Instances { get; init; } = [];
}
