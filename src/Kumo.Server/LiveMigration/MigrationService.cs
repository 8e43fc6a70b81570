using Dapper;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Operations;
using Kumo.Server.Scheduling;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Kumo.Server.LiveMigration;

/// <summary>kumod --migration-ports and --migration-host.</summary>
public sealed record MigrationOptions
{
    public int First { get; init; } = 21500;
    public int Last { get; init; } = 21599;

    /// <summary>
    /// The address target QEMUs listen on and sources connect to. Nodes do not record an address of their own yet,
    /// so this is one address for every node: loopback when all agents share a machine (as in the tests).
    /// </summary>
    public string Host { get; init; } = "127.0.0.1";
}

/// <summary>
/// Live migration of a running VM to another node. kumod records the migration (one row, with the target's capacity
/// reserved and a port from the pool) and from then on only reacts to what the two agents report, level-triggered
/// like everything else: the target is asked to wait for the guest, the source to send it once the target listens.
/// The write that sees the guest arrive moves the instance to the target (the source then removes its copy, as it
/// does for anything no longer assigned to it); the write that sees it fail deletes the row (the target removes its
/// waiting QEMU, the source's guest never stopped). A kumod restart loses nothing: the row and the agents' reports
/// carry the whole state.
/// </summary>
public sealed class MigrationService(Database db, Scheduler scheduler, OperationStore operations, NodeSignals signals,
    IOptions<MigrationOptions> options, TimeProvider time)
{
    private MigrationOptions Pool => options.Value;

    private sealed class MigrationRow
    {
        public string InstanceId { get; set; } = "";
        public string Id { get; set; } = "";
        public string SourceNodeId { get; set; } = "";
        public string TargetNodeId { get; set; } = "";
        public long Port { get; set; }
        public string OperationId { get; set; } = "";
        public long Listening { get; set; }
        public long Received { get; set; }
        public long SourceLost { get; set; }
    }

    internal string EndpointOf(long port) =>
        Pool.Host.Contains(':', StringComparison.Ordinal) ? $"[{Pool.Host}]:{port}" : $"{Pool.Host}:{port}";

    /// <summary>The operation's expectation: finished by this migration's outcome only.</summary>
    private static string Expectation(string migrationId) => $"migrate:{migrationId}";

    public Task<Operation> StartAsync(Caller caller, string project, string name, InstanceMigratePost? body, CancellationToken ct)
    {
        var target = body?.Node?.Trim();
        if (string.IsNullOrEmpty(target))
            throw ProblemException.Validation("node", "name the node to move to (kumo vm migrate NAME --to NODE)");
        return db.WriteAsync(ctx => Start(ctx, caller, project, name, target), ct);
    }

    private Operation Start(WriteContext ctx, Caller caller, string project, string name, string targetName)
    {
        var c = ctx.Connection;
        var vm = c.QuerySingleOrDefault<InstanceRow>(
            "SELECT i.*, n.name AS node_name FROM instances i LEFT JOIN nodes n ON n.id = i.node_id WHERE i.project = @project AND i.name = @name",
            new { project, name }, ctx.Transaction) ?? throw ProblemException.NotFound("instance", name);
        var target = c.QuerySingleOrDefault<NodeRow>("SELECT * FROM nodes WHERE name = @targetName", new { targetName }, ctx.Transaction)
            ?? throw ProblemException.Validation("node", $"node '{targetName}' does not exist (see: kumo node list)");
        if (vm.Type != InstanceTypes.Vm)
            throw ProblemException.InvalidState($"instance '{name}' is a {vm.Type}; only VMs can be live-migrated");
        if (vm.NodeId == target.Id)
            throw ProblemException.Validation("node", $"vm '{name}' already runs on node '{targetName}'");
        if (c.QuerySingleOrDefault<string?>("SELECT n.name FROM migrations m JOIN nodes n ON n.id = m.target_node_id WHERE m.instance_id = @Id", vm, ctx.Transaction) is { } busy)
            throw ProblemException.InvalidState($"vm '{name}' is already being migrated to node '{busy}'");
        if (vm.DesiredPower != PowerStates.Running || vm.State != InstanceStates.Running || vm.NodeId is null)
            throw ProblemException.InvalidState($"vm '{name}' is {vm.State}; only a running VM can be live-migrated (a stopped one needs no migration yet: not built)");
        if (scheduler.NodeState(vm.NodeId) == NodeStates.Down)
            throw new ProblemException(503, ProblemTypes.NodeUnavailable, "The VM's node is unreachable", $"node '{vm.NodeName}' is down; its agent must be connected to send the guest");
        // What the migration does not carry (yet): say so instead of losing it.
        if (c.ExecuteScalar<long>("SELECT count(*) FROM snapshots WHERE instance_id = @Id", vm, ctx.Transaction) > 0)
            throw ProblemException.InvalidState($"vm '{name}' has snapshots, which do not move with it; delete them first (kumo vm snapshot {name} list)");
        if (c.ExecuteScalar<long>("SELECT count(*) FROM volumes WHERE instance_id = @Id", vm, ctx.Transaction) > 0)
            throw ProblemException.InvalidState($"vm '{name}' has volumes attached, which stay on their node; detach them first (kumo volume list)");
        if (c.ExecuteScalar<long>("SELECT count(*) FROM network_addresses WHERE instance_id = @Id", vm, ctx.Transaction) > 0)
            throw ProblemException.InvalidState($"vm '{name}' has NICs on tenant networks, which do not follow it to another node yet");
        if (c.ExecuteScalar<long>("SELECT count(*) FROM debug_ports WHERE instance_id = @Id", vm, ctx.Transaction) > 0)
            throw ProblemException.InvalidState($"vm '{name}' has a gdb stub open; turn it off first (kumo vm debug {name} --off)");

        // The target's capacity is held from now on, so nothing else can take it while the guest is on its way.
        try
        {
            scheduler.Place(ctx, new PlacementRequest((int)vm.Cpus, vm.MemoryBytes, targetName, null));
        }
        catch (NoCapacityException e)
        {
            var why = e.Rejections.TryGetValue(targetName, out var reason) ? reason : string.Join("; ", e.Rejections.Values);
            throw new ProblemException(409, ProblemTypes.NoCapacity, "The target node cannot host this VM",
                $"node '{targetName}' cannot take vm '{name}' ({vm.Cpus} vCPU, {ByteSize.Human(vm.MemoryBytes)}): {why}")
            { Rejections = e.Rejections };
        }

        var used = c.Query<long>("SELECT port FROM migrations", transaction: ctx.Transaction).ToHashSet();
        var port = Enumerable.Range(Pool.First, Pool.Last - Pool.First + 1).Select(p => (long)p).FirstOrDefault(p => !used.Contains(p));
        if (port == 0)
            throw new ProblemException(409, ProblemTypes.NoCapacity, "No migration port is free",
                $"all ports of the migration pool ({Pool.First}-{Pool.Last}) are in use by migrations in flight; wait for one to finish");

        var migrationId = Ulid.NewUlid().ToString().ToLowerInvariant();
        var op = operations.Insert(ctx, "migrate", name, vm.Id, Expectation(migrationId), 0,
            $"migrating from {vm.NodeName} to {targetName}: starting QEMU on {targetName}", supersede: false, project: project, userId: caller.UserId);
        c.Execute(
            """
            INSERT INTO migrations (instance_id, id, source_node_id, target_node_id, port, operation_id, created_at)
            VALUES (@instanceId, @migrationId, @source, @target, @port, @op, @at)
            """,
            new { instanceId = vm.Id, migrationId, source = vm.NodeId, target = target.Id, port, op = op.Id, at = Json.Now(time) }, ctx.Transaction);
        var (sourceId, targetId) = (vm.NodeId, target.Id);
        ctx.OnCommit(() =>
        {
            signals.Notify(targetId);
            signals.Notify(sourceId);
        });
        return op;
    }

    /// <summary>True while the instance is being migrated (power actions wait for the outcome).</summary>
    internal static bool InFlight(WriteContext ctx, string instanceId) =>
        ctx.Connection.ExecuteScalar<long>("SELECT count(*) FROM migrations WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction) > 0;

    /// <summary>
    /// Calls off the instance's migration inside a write that removes or force-deletes the instance: the target's
    /// reservation is released and its node told to drop the waiting QEMU.
    /// </summary>
    internal static void Forget(WriteContext ctx, Scheduler scheduler, OperationStore operations, NodeSignals signals, InstanceRow vm, string why)
    {
        var m = Find(ctx, vm.Id);
        if (m is null) return;
        Abort(ctx, scheduler, operations, signals, m, vm, $"migration called off: {why}");
    }

    /// <summary>Applies one agent's report about its side of a migration.</summary>
    internal void Apply(WriteContext ctx, string nodeId, InstanceStatus s)
    {
        if (string.IsNullOrEmpty(s.MigrationId)) return;
        var m = Find(ctx, s.Id);
        if (m is null || m.Id != s.MigrationId) return;
        var vm = ctx.Connection.QuerySingleOrDefault<InstanceRow>(
            "SELECT i.*, n.name AS node_name FROM instances i LEFT JOIN nodes n ON n.id = i.node_id WHERE i.id = @InstanceId", m, ctx.Transaction);
        if (vm is null) return;
        var targetName = ctx.Connection.QuerySingleOrDefault<string?>("SELECT name FROM nodes WHERE id = @TargetNodeId", m, ctx.Transaction) ?? "the target";
        if (nodeId == m.TargetNodeId)
        {
            switch (s.MigrationState)
            {
                case "listening" when m.Listening == 0:
                    ctx.Connection.Execute("UPDATE migrations SET listening = 1 WHERE instance_id = @InstanceId", m, ctx.Transaction);
                    Progress(ctx, m, $"migrating from {vm.NodeName} to {targetName}: {targetName} waits for the guest");
                    ctx.OnCommit(() => signals.Notify(m.SourceNodeId));
                    break;
                case "received":
                    // The target runs the guest. The source's "completed" carries the timings, so it is waited for
                    // unless the source cannot say any more (its QEMU is gone, or its node is down).
                    if (m.SourceLost == 1 || scheduler.NodeState(m.SourceNodeId) == NodeStates.Down)
                        Commit(ctx, m, vm, targetName, $"migrated from {vm.NodeName} to {targetName} (the source could not report timings)");
                    else
                        ctx.Connection.Execute("UPDATE migrations SET received = 1 WHERE instance_id = @InstanceId", m, ctx.Transaction);
                    break;
                case "failed":
                    Abort(ctx, m, vm, Failed($"node {targetName}: {s.MigrationError}", vm));
                    break;
            }
            return;
        }
        if (nodeId != m.SourceNodeId) return;
        switch (s.MigrationState)
        {
            case "active":
                var percent = s.MigrationTotalBytes > 0 ? $" ({100.0 * s.MigrationTransferredBytes / s.MigrationTotalBytes:0}%)" : "";
                Progress(ctx, m, $"migrating from {vm.NodeName} to {targetName}: {ByteSize.Human(s.MigrationTransferredBytes)} of {ByteSize.Human(s.MigrationTotalBytes)} sent{percent}");
                break;
            case "completed":
                Commit(ctx, m, vm, targetName,
                    $"migrated from {vm.NodeName} to {targetName} in {s.MigrationTotalMs} ms, {s.MigrationDowntimeMs} ms downtime, {ByteSize.Human(s.MigrationTransferredBytes)} sent");
                break;
            case "failed":
                Abort(ctx, m, vm, Failed(s.MigrationError, vm));
                break;
            case "lost" when m.Received == 1:
                Commit(ctx, m, vm, targetName, $"migrated from {vm.NodeName} to {targetName} (the source's QEMU exited before it reported timings)");
                break;
            case "lost":
                // Only the target can tell now: the guest arrived (commit) or its QEMU gives up (abort).
                ctx.Connection.Execute("UPDATE migrations SET source_lost = 1 WHERE instance_id = @InstanceId", m, ctx.Transaction);
                Progress(ctx, m, $"the source's QEMU exited during the migration; waiting for {targetName} to say whether the guest arrived");
                break;
        }
    }

    /// <summary>The guest runs on the target: the instance moves there in this one write.</summary>
    private void Commit(WriteContext ctx, MigrationRow m, InstanceRow vm, string targetName, string message)
    {
        ctx.Connection.Execute("DELETE FROM migrations WHERE instance_id = @InstanceId", m, ctx.Transaction);
        ctx.Connection.Execute(
            """
            UPDATE instances SET node_id = @TargetNodeId, desired_power = 'running', status_message = @message,
                version = version + 1, updated_at = @now WHERE id = @InstanceId
            """,
            new { m.TargetNodeId, m.InstanceId, message, now = Json.Now(time) }, ctx.Transaction);
        scheduler.Release(ctx, m.SourceNodeId, (int)vm.Cpus, vm.MemoryBytes);
        operations.Complete(ctx, m.InstanceId, Expectation(m.Id), 0, null, message);
        ctx.OnCommit(() =>
        {
            signals.Notify(m.SourceNodeId);
            signals.Notify(m.TargetNodeId);
        });
    }

    /// <summary>The guest stays (or is) on the source: the row goes, the target's copy and reservation with it.</summary>
    private void Abort(WriteContext ctx, MigrationRow m, InstanceRow vm, string error) => Abort(ctx, scheduler, operations, signals, m, vm, error);

    private static void Abort(WriteContext ctx, Scheduler scheduler, OperationStore operations, NodeSignals signals, MigrationRow m, InstanceRow vm, string error)
    {
        ctx.Connection.Execute("DELETE FROM migrations WHERE instance_id = @InstanceId", m, ctx.Transaction);
        scheduler.Release(ctx, m.TargetNodeId, (int)vm.Cpus, vm.MemoryBytes);
        operations.Complete(ctx, m.InstanceId, Expectation(m.Id), 0, error, "migration failed");
        ctx.OnCommit(() =>
        {
            signals.Notify(m.SourceNodeId);
            signals.Notify(m.TargetNodeId);
        });
    }

    private static string Failed(string why, InstanceRow vm) => $"migration failed: {why}; the VM keeps running on {vm.NodeName}";

    private void Progress(WriteContext ctx, MigrationRow m, string message) => operations.ProgressOn(ctx, m.InstanceId, Expectation(m.Id), message);

    private static MigrationRow? Find(WriteContext ctx, string instanceId) =>
        ctx.Connection.QuerySingleOrDefault<MigrationRow>("SELECT * FROM migrations WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction);

    /// <summary>Adds the desired-state fields of migrations to a node's desired state: its outgoing and incoming guests.</summary>
    internal void AddDesired(SqliteConnection c, string nodeId, IReadOnlyDictionary<string, DesiredInstance> byId)
    {
        foreach (var m in c.Query<MigrationRow>("SELECT * FROM migrations WHERE source_node_id = @nodeId OR target_node_id = @nodeId", new { nodeId }))
        {
            if (!byId.TryGetValue(m.InstanceId, out var d)) continue;
            d.MigrationId = m.Id;
            if (m.TargetNodeId == nodeId)
            {
                d.MigrateIncoming = EndpointOf(m.Port);
                // The waiting QEMU gets the machine only; stubs, snapshots and volumes are refused before a migration.
                d.DebugEndpoint = "";
                d.Power = PowerStates.Running;
            }
            else if (m.Listening == 1)
            {
                d.MigrateTo = EndpointOf(m.Port);
            }
        }
    }
}
