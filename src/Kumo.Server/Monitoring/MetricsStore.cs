using System.Collections.Concurrent;
using Kumo.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Monitoring;

public sealed record MetricsOptions
{
    /// <summary>How far back kumod keeps samples in memory (per node and per instance).</summary>
    public TimeSpan History { get; init; } = TimeSpan.FromMinutes(15);

    /// <summary>Upper bound of samples per series, whatever interval agents choose: memory stays bounded.</summary>
    public int MaxSamples { get; init; } = 1000;
}

/// <summary>A node sample as received, stamped with kumod's clock (agents' clocks may disagree with it and with each other).</summary>
public sealed record NodePoint(DateTimeOffset At, NodeSample Sample, TimeSpan Interval);

public sealed record GuestPoint(DateTimeOffset At, GuestSample Sample, string NodeId);

/// <summary>
/// The recent history of every node and guest, in memory only: one bounded ring per series, trimmed by age and count.
/// A kumod restart starts empty (measured usage, which must survive it, is persisted by <see cref="MeasuredUsage"/>).
/// </summary>
public sealed class MetricsStore(IOptions<MetricsOptions> options, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Ring<NodePoint>> _nodes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Ring<GuestPoint>> _guests = new(StringComparer.Ordinal);

    public MetricsOptions Options => options.Value;

    public void Add(string nodeId, MetricsReport report)
    {
        var now = time.GetUtcNow();
        var interval = TimeSpan.FromMilliseconds(Math.Max(0, report.IntervalMs));
        if (report.Node is not null)
            RingOf(_nodes, nodeId).Add(new NodePoint(now, report.Node, interval), now - Options.History);
        foreach (var g in report.Guests)
            RingOf(_guests, g.InstanceId).Add(new GuestPoint(now, g, nodeId), now - Options.History);
        Prune(now);
    }

    public IReadOnlyList<NodePoint> Node(string nodeId) => _nodes.TryGetValue(nodeId, out var r) ? r.Snapshot() : [];

    public IReadOnlyList<GuestPoint> Guest(string instanceId) => _guests.TryGetValue(instanceId, out var r) ? r.Snapshot() : [];

    public TimeSpan? IntervalOf(string nodeId) => Node(nodeId) is { Count: > 0 } n ? n[^1].Interval : null;

    public void ForgetNode(string nodeId) => _nodes.TryRemove(nodeId, out _);

    /// <summary>Drops series that received nothing for a whole history window (deleted guests, removed nodes).</summary>
    private void Prune(DateTimeOffset now)
    {
        var cutoff = now - Options.History;
        foreach (var (id, ring) in _guests)
        {
            if (ring.Last is { } last && last.At < cutoff) _guests.TryRemove(id, out _);
        }
        foreach (var (id, ring) in _nodes)
        {
            if (ring.Last is { } last && last.At < cutoff) _nodes.TryRemove(id, out _);
        }
    }

    private Ring<T> RingOf<T>(ConcurrentDictionary<string, Ring<T>> map, string key) where T : class =>
        map.GetOrAdd(key, _ => new Ring<T>(Options.MaxSamples, p => p switch
        {
            NodePoint n => n.At,
            GuestPoint g => g.At,
            _ => DateTimeOffset.MinValue,
        }));

    // ---- views for the API

    public NodeMetrics? NodeView(string nodeId)
    {
        var points = Node(nodeId);
        if (points.Count == 0) return null;
        var last = points[^1];
        var s = last.Sample;
        double? cpu = null, rx = null, tx = null;
        if (points.Count > 1)
        {
            var prev = points[^2];
            var busy = s.CpuBusySeconds - prev.Sample.CpuBusySeconds;
            var all = busy + s.CpuIdleSeconds - prev.Sample.CpuIdleSeconds;
            if (all > 0 && busy >= 0) cpu = Math.Round(100 * busy / all, 1);
            var seconds = (last.At - prev.At).TotalSeconds;
            if (seconds > 0)
            {
                rx = Rate(s.NetRxBytes, prev.Sample.NetRxBytes, seconds);
                tx = Rate(s.NetTxBytes, prev.Sample.NetTxBytes, seconds);
            }
        }
        return new NodeMetrics
        {
            At = last.At,
            CpuPercent = cpu,
            Cpus = s.Cpus,
            MemoryTotalBytes = s.MemoryTotalBytes,
            MemoryUsedBytes = Math.Max(0, s.MemoryTotalBytes - s.MemoryAvailableBytes),
            DiskTotalBytes = s.DiskTotalBytes,
            DiskUsedBytes = Math.Max(0, s.DiskTotalBytes - s.DiskFreeBytes),
            NetRxBytes = s.NetRxBytes,
            NetTxBytes = s.NetTxBytes,
            NetRxBytesPerSecond = rx,
            NetTxBytesPerSecond = tx,
        };
    }

    /// <summary>The samples of a guest with rates against their predecessors (none across a guest restart).</summary>
    public List<InstanceSample> InstanceView(string instanceId)
    {
        var points = Guest(instanceId);
        var result = new List<InstanceSample>(points.Count);
        for (var i = 0; i < points.Count; i++)
            result.Add(Sample(points[i], i > 0 ? points[i - 1] : null));
        return result;
    }

    public InstanceSample? LatestView(string instanceId)
    {
        var points = Guest(instanceId);
        return points.Count == 0 ? null : Sample(points[^1], points.Count > 1 ? points[^2] : null);
    }

    private static InstanceSample Sample(GuestPoint p, GuestPoint? prev)
    {
        var s = p.Sample;
        double? cpu = null, rx = null, tx = null;
        if (prev is not null && prev.Sample.ProcessKey == s.ProcessKey && (p.At - prev.At).TotalSeconds is var seconds and > 0)
        {
            cpu = s.CpuSeconds >= prev.Sample.CpuSeconds ? Math.Round(100 * (s.CpuSeconds - prev.Sample.CpuSeconds) / seconds, 1) : null;
            if (s.HasNet && prev.Sample.HasNet)
            {
                rx = Rate(s.NetRxBytes, prev.Sample.NetRxBytes, seconds);
                tx = Rate(s.NetTxBytes, prev.Sample.NetTxBytes, seconds);
            }
        }
        return new InstanceSample
        {
            At = p.At,
            CpuSeconds = s.CpuSeconds,
            CpuPercent = cpu,
            MemoryRssBytes = s.MemoryRssBytes,
            DiskAllocatedBytes = s.DiskAllocatedBytes,
            DiskReadBytes = s.DiskReadBytes < 0 ? null : s.DiskReadBytes,
            DiskWriteBytes = s.DiskWriteBytes < 0 ? null : s.DiskWriteBytes,
            NetRxBytes = s.HasNet ? s.NetRxBytes : null,
            NetTxBytes = s.HasNet ? s.NetTxBytes : null,
            NetRxBytesPerSecond = rx,
            NetTxBytesPerSecond = tx,
        };
    }

    /// <summary>Bytes per second; null when the counter went backwards (an interface was recreated).</summary>
    private static double? Rate(long now, long before, double seconds) => now >= before ? Math.Round((now - before) / seconds, 1) : null;

    /// <summary>A bounded, time-ordered ring; readers get a copy.</summary>
    private sealed class Ring<T>(int capacity, Func<T, DateTimeOffset> at) where T : class
    {
        private readonly Queue<T> _items = new();
        private readonly Lock _lock = new();
        private volatile T? _last;

        public T? Last => _last;

        public void Add(T item, DateTimeOffset cutoff)
        {
            lock (_lock)
            {
                _items.Enqueue(item);
                _last = item;
                while (_items.Count > capacity || (_items.Count > 0 && at(_items.Peek()) < cutoff)) _items.Dequeue();
            }
        }

        public List<T> Snapshot()
        {
            lock (_lock) return [.. _items];
        }
    }
}
