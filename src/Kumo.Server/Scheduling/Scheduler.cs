using Kumo.Core;
using Kumo.Server.Storage;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Scheduling;

public sealed record SchedulerOptions
{
    /// <summary>vCPUs that may be placed per physical CPU.</summary>
    public double CpuOvercommit { get; init; } = 4.0;

    /// <summary>Memory that may be placed per byte of node memory.</summary>
    public double MemoryOvercommit { get; init; } = 1.0;

    /// <summary>spread (most free memory first) or pack (least free memory that still fits).</summary>
    public string Weigher { get; init; } = "spread";
}

/// <param name="Excluded">Nodes the caller already knows cannot take this instance, by node id, with the reason.</param>
public sealed record PlacementRequest(int Cpus, long MemoryBytes, string? PinnedNode, IReadOnlyDictionary<string, string>? NodeSelector,
    IReadOnlyDictionary<string, string>? Excluded = null);

public sealed class NoCapacityException(IReadOnlyDictionary<string, string> rejections)
    : Exception("no node can host this instance")
{
    public IReadOnlyDictionary<string, string> Rejections { get; } = rejections;
}

/// <summary>
/// Filter-then-weigh placement over an in-memory view of node capacity. The view is only changed from inside
/// database writes (the single writer), and every change registers its undo, so the view always equals what the
/// committed database says even when a write in a batch fails.
/// </summary>
public sealed class Scheduler(IOptions<SchedulerOptions> options)
{
    private readonly object _lock = new();
    private readonly Dictionary<string, NodeView> _nodes = new(StringComparer.Ordinal);
    private SchedulerOptions Options => options.Value;

    public sealed class NodeView
    {
        public required string Id { get; init; }
        public required string Name { get; set; }
        public required string State { get; set; }
        public int Cpus { get; set; }
        public long MemoryBytes { get; set; }
        public IReadOnlyDictionary<string, string> Labels { get; set; } = new Dictionary<string, string>();
        public int UsedCpus { get; set; }
        public long UsedMemoryBytes { get; set; }
        public int Instances { get; set; }
    }

    /// <summary>Rebuilds the view from the database (start-up, restore).</summary>
    public void Load(Database db)
    {
        using var c = db.Open();
        var nodes = Dapper.SqlMapper.Query<NodeRow>(c, "SELECT * FROM nodes").ToList();
        var usage = Dapper.SqlMapper.Query<(string NodeId, long Cpus, long Memory, long Count)>(c,
            // A migration in flight holds its target's capacity as well as the source's.
            """
            SELECT node_id, SUM(cpus), SUM(memory_bytes), COUNT(*) FROM (
                SELECT node_id, cpus, memory_bytes FROM instances WHERE node_id IS NOT NULL
                UNION ALL SELECT m.target_node_id, i.cpus, i.memory_bytes FROM migrations m JOIN instances i ON i.id = m.instance_id)
            GROUP BY node_id
            """)
            .ToDictionary(u => u.NodeId);
        lock (_lock)
        {
            _nodes.Clear();
            foreach (var n in nodes)
            {
                usage.TryGetValue(n.Id, out var u);
                _nodes[n.Id] = new NodeView
                {
                    Id = n.Id,
                    Name = n.Name,
                    State = n.State,
                    Cpus = (int)n.Cpus,
                    MemoryBytes = n.MemoryBytes,
                    Labels = Json.Labels(n.Labels),
                    UsedCpus = (int)u.Cpus,
                    UsedMemoryBytes = u.Memory,
                    Instances = (int)u.Count,
                };
            }
        }
    }

    public (int UsedCpus, long UsedMemory, int Instances) Usage(string nodeId)
    {
        lock (_lock)
            return _nodes.TryGetValue(nodeId, out var n) ? (n.UsedCpus, n.UsedMemoryBytes, n.Instances) : (0, 0, 0);
    }

    public bool HasNode(string name)
    {
        lock (_lock)
            return _nodes.Values.Any(n => n.Name == name);
    }

    public string? NodeState(string nodeId)
    {
        lock (_lock)
            return _nodes.TryGetValue(nodeId, out var n) ? n.State : null;
    }

    /// <summary>Records a node's new shape inside a write; undone if the write rolls back.</summary>
    public void UpsertNode(WriteContext ctx, string id, string name, string state, int cpus, long memory, IReadOnlyDictionary<string, string> labels)
    {
        lock (_lock)
        {
            if (_nodes.TryGetValue(id, out var old))
            {
                var (oName, oState, oCpus, oMem, oLabels) = (old.Name, old.State, old.Cpus, old.MemoryBytes, old.Labels);
                (old.Name, old.State, old.Cpus, old.MemoryBytes, old.Labels) = (name, state, cpus, memory, labels);
                ctx.OnRollback(() => { lock (_lock) (old.Name, old.State, old.Cpus, old.MemoryBytes, old.Labels) = (oName, oState, oCpus, oMem, oLabels); });
            }
            else
            {
                _nodes[id] = new NodeView { Id = id, Name = name, State = state, Cpus = cpus, MemoryBytes = memory, Labels = labels };
                ctx.OnRollback(() => { lock (_lock) _nodes.Remove(id); });
            }
        }
    }

    public void RemoveNode(WriteContext ctx, string id)
    {
        lock (_lock)
        {
            if (!_nodes.Remove(id, out var old)) return;
            ctx.OnRollback(() => { lock (_lock) _nodes[id] = old; });
        }
    }

    /// <summary>Chooses a node and reserves the capacity, inside the write that inserts the instance.</summary>
    public NodeView Place(WriteContext ctx, PlacementRequest request)
    {
        lock (_lock)
        {
            var rejections = new SortedDictionary<string, string>(StringComparer.Ordinal);
            NodeView? best = null;
            double bestScore = double.NegativeInfinity;
            foreach (var n in _nodes.Values)
            {
                var why = Reject(n, request);
                if (why is not null)
                {
                    rejections[n.Name] = why;
                    continue;
                }
                var score = Score(n, request);
                if (best is null || score > bestScore || (score == bestScore && string.CompareOrdinal(n.Name, best.Name) < 0))
                {
                    best = n;
                    bestScore = score;
                }
            }
            if (best is null)
            {
                if (_nodes.Count == 0) rejections["(none)"] = "no node is registered; start kumo-agent";
                throw new NoCapacityException(rejections);
            }
            Reserve(ctx, best.Id, request.Cpus, request.MemoryBytes, +1);
            return best;
        }
    }

    /// <summary>Gives capacity back (instance deleted), inside the write that deletes it.</summary>
    public void Release(WriteContext ctx, string nodeId, int cpus, long memory) => Reserve(ctx, nodeId, cpus, memory, -1);

    private void Reserve(WriteContext ctx, string nodeId, int cpus, long memory, int sign)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var n)) return;
            n.UsedCpus += sign * cpus;
            n.UsedMemoryBytes += sign * memory;
            n.Instances += sign;
            ctx.OnRollback(() =>
            {
                lock (_lock)
                {
                    n.UsedCpus -= sign * cpus;
                    n.UsedMemoryBytes -= sign * memory;
                    n.Instances -= sign;
                }
            });
        }
    }

    private string? Reject(NodeView n, PlacementRequest r)
    {
        if (r.PinnedNode is not null && n.Name != r.PinnedNode)
            return $"not the requested node '{r.PinnedNode}'";
        if (n.State == NodeStates.Down) return "node is down (no heartbeat)";
        if (r.Excluded is not null && r.Excluded.TryGetValue(n.Id, out var excluded)) return excluded;
        if (n.State == NodeStates.Draining) return "node is draining";
        if (r.NodeSelector is not null)
        {
            foreach (var (k, v) in r.NodeSelector)
            {
                if (!n.Labels.TryGetValue(k, out var have) || have != v)
                    return $"label {k}={v} does not match";
            }
        }
        var cpuLimit = (int)Math.Floor(n.Cpus * Options.CpuOvercommit);
        if (n.UsedCpus + r.Cpus > cpuLimit)
            return $"needs {r.Cpus} vCPU, {Math.Max(0, cpuLimit - n.UsedCpus)} of {cpuLimit} free (cpu overcommit {Options.CpuOvercommit:0.##})";
        var memLimit = (long)Math.Floor(n.MemoryBytes * Options.MemoryOvercommit);
        if (n.UsedMemoryBytes + r.MemoryBytes > memLimit)
            return $"needs {ByteSize.Human(r.MemoryBytes)} memory, {ByteSize.Human(Math.Max(0, memLimit - n.UsedMemoryBytes))} of {ByteSize.Human(memLimit)} free";
        return null;
    }

    private double Score(NodeView n, PlacementRequest r)
    {
        var memLimit = n.MemoryBytes * Options.MemoryOvercommit;
        var freeAfter = memLimit <= 0 ? 0 : (memLimit - n.UsedMemoryBytes - r.MemoryBytes) / memLimit;
        // Fewer instances breaks ties between equally free nodes, so spread is deterministic and even.
        var score = freeAfter - n.Instances * 1e-9;
        return Options.Weigher == "pack" ? -score : score;
    }
}
