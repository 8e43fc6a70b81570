using System.Collections.Concurrent;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Instances;
using Kumo.Server.Scheduling;
using Kumo.Server.Security;
using Kumo.Server.Storage;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Agents;

public sealed record NodeHealthOptions
{
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>A node with no heartbeat for this long is down and its instances lost.</summary>
    public TimeSpan DownAfter { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>Nodes: registration, liveness, drain and removal.</summary>
public sealed class NodeService(
    Database db, Scheduler scheduler, InstanceService instances, NodeSignals signals,
    IOptions<NodeHealthOptions> health, TimeProvider time, Monitoring.MetricsStore? metrics = null)
{
    // Heartbeats are kept in memory: persisting each one would cost a durable write every few seconds per node
    // for a value that only matters while kumod runs. A restart gives every node a fresh grace period.
    private readonly ConcurrentDictionary<string, DateTimeOffset> _lastSeen = new();

    public NodeHealthOptions Health => health.Value;

    public async Task<string> RegisterAsync(string name, int cpus, long memory, string accelerator,
        IReadOnlyDictionary<string, string> labels, string? agentVersion, CancellationToken ct, string? vxlanAddress = null)
    {
        if (Names.Validate(name, "node name") is { } error) throw ProblemException.Validation("name", error);
        vxlanAddress = string.IsNullOrEmpty(vxlanAddress) ? null : vxlanAddress;
        if (vxlanAddress is not null && Vxlan.ValidateUnderlay(vxlanAddress) is { } underlayError)
            throw ProblemException.Validation("vxlanAddress", underlayError);
        var id = await db.WriteAsync(ctx =>
        {
            var c = ctx.Connection;
            var row = c.QuerySingleOrDefault<NodeRow>("SELECT * FROM nodes WHERE name = @name", new { name }, ctx.Transaction);
            var now = Json.Now(time);
            if (row is null)
            {
                row = new NodeRow { Id = Ulid.NewUlid().ToString().ToLowerInvariant(), Name = name, CreatedAt = now, Version = 0 };
                c.Execute("INSERT INTO nodes (id, name, health, accelerator, cpus, memory_bytes, version, created_at) VALUES (@Id, @Name, 'ready', '', 0, 0, 0, @CreatedAt)",
                    row, ctx.Transaction);
            }
            row.Health = NodeStates.Ready;
            row.Cpus = cpus;
            row.MemoryBytes = memory;
            row.Accelerator = accelerator;
            row.Labels = Json.Labels(labels);
            row.AgentVersion = agentVersion;
            var peersChanged = row.VxlanAddress != vxlanAddress;
            row.VxlanAddress = vxlanAddress;
            row.LastHeartbeat = now;
            // The other nodes' VXLAN peer lists name this node's address.
            if (peersChanged) ctx.OnCommit(signals.NotifyAll);
            row.Version++;
            c.Execute(
                """
                UPDATE nodes SET health = @Health, cpus = @Cpus, memory_bytes = @MemoryBytes, accelerator = @Accelerator, labels = @Labels,
                    agent_version = @AgentVersion, vxlan_address = @VxlanAddress, last_heartbeat = @LastHeartbeat, version = @Version WHERE id = @Id
                """, row, ctx.Transaction);
            scheduler.UpsertNode(ctx, row.Id, name, row.State, cpus, memory, labels);
            return row.Id;
        }, ct);
        _lastSeen[id] = time.GetUtcNow();
        signals.Notify(id);
        return id;
    }

    /// <summary>Returns (known, resync): resync asks the agent for a full status report after the node was down.</summary>
    public async Task<(bool Known, bool Resync)> HeartbeatAsync(string nodeId, CancellationToken ct)
    {
        var state = scheduler.NodeState(nodeId);
        if (state is null) return (false, false);
        _lastSeen[nodeId] = time.GetUtcNow();
        if (state != NodeStates.Down) return (true, false);
        await SetHealthAsync(nodeId, NodeStates.Ready, ct);
        return (true, true);
    }

    public void Touch(string nodeId) => _lastSeen[nodeId] = time.GetUtcNow();

    /// <summary>Marks nodes without recent heartbeats down and their instances lost. Returns how many went down.</summary>
    public async Task<int> CheckLivenessAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var nodes = await db.ReadAsync(c => c.Query<NodeRow>("SELECT * FROM nodes WHERE health = 'ready'").ToList(), ct);
        var down = 0;
        foreach (var n in nodes)
        {
            var seen = _lastSeen.GetOrAdd(n.Id, now);
            if (now - seen < Health.DownAfter) continue;
            await SetHealthAsync(n.Id, NodeStates.Down, ct);
            down++;
        }
        return down;
    }

    private Task SetHealthAsync(string nodeId, string healthState, CancellationToken ct) => db.WriteAsync(ctx =>
    {
        var row = ctx.Connection.QuerySingleOrDefault<NodeRow>("SELECT * FROM nodes WHERE id = @nodeId", new { nodeId }, ctx.Transaction);
        if (row is null || row.Health == healthState) return;
        row.Health = healthState;
        ctx.Connection.Execute("UPDATE nodes SET health = @Health, version = version + 1, last_heartbeat = @now WHERE id = @Id",
            new { row.Health, row.Id, now = _lastSeen.TryGetValue(nodeId, out var s) ? s.ToString("O") : null }, ctx.Transaction);
        scheduler.UpsertNode(ctx, row.Id, row.Name, row.State, (int)row.Cpus, row.MemoryBytes, Json.Labels(row.Labels));
        if (healthState == NodeStates.Down) instances.MarkLost(ctx, nodeId);
    }, ct);

    public Task<List<Node>> ListAsync(CancellationToken ct) =>
        db.ReadAsync(c => c.Query<NodeRow>("SELECT * FROM nodes ORDER BY name").Select(ToApi).ToList(), ct);

    public async Task<Node> GetAsync(string name, CancellationToken ct) =>
        ToApi(await db.ReadAsync(c => c.QuerySingleOrDefault<NodeRow>("SELECT * FROM nodes WHERE name = @name", new { name }), ct)
            ?? throw ProblemException.NotFound("node", name));

    public async Task<Node> SetDrainingAsync(string name, bool draining, CancellationToken ct)
    {
        await db.WriteAsync(ctx =>
        {
            var row = ctx.Connection.QuerySingleOrDefault<NodeRow>("SELECT * FROM nodes WHERE name = @name", new { name }, ctx.Transaction)
                ?? throw ProblemException.NotFound("node", name);
            row.Draining = draining ? 1 : 0;
            ctx.Connection.Execute("UPDATE nodes SET draining = @Draining, version = version + 1 WHERE id = @Id", row, ctx.Transaction);
            scheduler.UpsertNode(ctx, row.Id, row.Name, row.State, (int)row.Cpus, row.MemoryBytes, Json.Labels(row.Labels));
        }, ct);
        return await GetAsync(name, ct);
    }

    public Task RemoveAsync(string name, bool force, CancellationToken ct) => db.WriteAsync(ctx =>
    {
        var c = ctx.Connection;
        var row = c.QuerySingleOrDefault<NodeRow>("SELECT * FROM nodes WHERE name = @name", new { name }, ctx.Transaction);
        if (row is null)
        {
            // A node that joined but never registered has a certificate and nothing else: removing it revokes that.
            if (NodeCertificates.RevokeAll(ctx, name, time) > 0)
                return;
            throw ProblemException.NotFound("node", name);
        }
        var names = c.Query<string>("SELECT name FROM instances WHERE node_id = @Id ORDER BY name", row, ctx.Transaction).ToList();
        if (names.Count > 0 && !force)
            throw new ProblemException(409, ProblemTypes.NodeBusy, "The node still hosts instances",
                $"node '{name}' hosts {names.Count} instance(s): {string.Join(", ", names.Take(10))}; delete them or remove with --force");
        instances.RemoveAllOnNode(ctx, row.Id);
        // Its agent is refused from now on; the machine comes back only by joining again with a new token.
        NodeCertificates.RevokeAll(ctx, name, time);
        c.Execute("DELETE FROM nodes WHERE id = @Id", row, ctx.Transaction);
        scheduler.RemoveNode(ctx, row.Id);
        ctx.OnCommit(() =>
        {
            _lastSeen.TryRemove(row.Id, out _);
            metrics?.ForgetNode(row.Id);
        });
    }, ct);

    private Node ToApi(NodeRow n)
    {
        var (usedCpus, usedMem, count) = scheduler.Usage(n.Id);
        return new Node
        {
            Id = n.Id,
            Name = n.Name,
            State = n.State,
            Accelerator = n.Accelerator,
            Cpus = (int)n.Cpus,
            MemoryBytes = n.MemoryBytes,
            UsedCpus = usedCpus,
            UsedMemoryBytes = usedMem,
            FreeCpus = (int)Math.Max(0, n.Cpus - usedCpus),
            FreeMemoryBytes = Math.Max(0, n.MemoryBytes - usedMem),
            Instances = count,
            Labels = Json.Labels(n.Labels),
            LastHeartbeat = _lastSeen.TryGetValue(n.Id, out var seen) ? seen : n.LastHeartbeat is null ? null : Json.Time(n.LastHeartbeat),
            AgentVersion = n.AgentVersion,
            VxlanAddress = n.VxlanAddress,
            Version = n.Version,
            CreatedAt = Json.Time(n.CreatedAt),
            Metrics = metrics?.NodeView(n.Id),
        };
    }
}
