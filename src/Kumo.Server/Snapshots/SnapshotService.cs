using Dapper;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Operations;
using Kumo.Server.Storage;

namespace Kumo.Server.Snapshots;

/// <summary>
/// Snapshots of a VM's root disk. kumod records what is wanted (a row per snapshot, a restore generation on the
/// instance) in one write with its operation; the agent carries it out and reports the disk's actual snapshot list,
/// which finishes the operations. A list read after an agent restart repairs anything interrupted.
/// </summary>
public sealed class SnapshotService(Database db, OperationStore operations, NodeSignals signals, TimeProvider time)
{
    public const string RestoreExpectation = "restore";

    public static string CreatedExpectation(string name) => "snapshot:" + name;

    public static string DeletedExpectation(string name) => "snapshot-gone:" + name;

    public async Task<List<Snapshot>> ListAsync(string project, string instance, CancellationToken ct) =>
        await db.ReadAsync(c =>
        {
            var row = FindInstance(c, null, project, instance) ?? throw ProblemException.NotFound("instance", instance);
            return c.Query<SnapshotRow>("SELECT * FROM snapshots WHERE instance_id = @Id ORDER BY created_at, name", row)
                .Select(s => s.ToApi(instance)).ToList();
        }, ct);

    public Task<Operation> CreateAsync(Caller caller, string project, string instance, SnapshotsPost? body, CancellationToken ct)
    {
        if (body is null)
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object with the snapshot's name");
        if (Names.Validate(body.Name, "snapshot name") is { } invalid) throw ProblemException.Validation("name", invalid);
        var name = body.Name!;
        return db.WriteAsync(ctx =>
        {
            var row = Usable(ctx, project, instance);
            var running = row.State == InstanceStates.Running && row.DesiredPower == PowerStates.Running;
            if (body.Memory == true && !running)
                throw ProblemException.InvalidState($"instance '{instance}' is {row.State}: a snapshot with RAM needs a running VM; leave out --ram for a disk-only snapshot");
            var memory = body.Memory ?? running;
            if (ctx.Connection.ExecuteScalar<long>("SELECT count(*) FROM snapshots WHERE instance_id = @Id AND name = @name", new { row.Id, name }, ctx.Transaction) > 0)
                throw ProblemException.Conflict($"instance '{instance}' already has a snapshot named '{name}'");
            ctx.Connection.Execute(
                "INSERT INTO snapshots (instance_id, name, memory, state, created_at) VALUES (@Id, @name, @memory, @state, @now)",
                new { row.Id, name, memory = memory ? 1 : 0, state = SnapshotStates.Creating, now = Json.Now(time) }, ctx.Transaction);
            Notify(ctx, row);
            return operations.Insert(ctx, "snapshot-create", $"{instance}/{name}", row.Id, CreatedExpectation(name), 0,
                memory ? "saving disk and RAM" : "saving the disk", supersede: false, project: project, userId: caller.UserId);
        }, ct);
    }

    public Task<Operation> RestoreAsync(Caller caller, string project, string instance, string name, CancellationToken ct) =>
        db.WriteAsync(ctx =>
        {
            var row = Usable(ctx, project, instance);
            var snap = Find(ctx, row.Id, name, instance);
            if (snap.State != SnapshotStates.Ready)
                throw ProblemException.InvalidState($"snapshot '{name}' is {snap.State}; wait for it to be ready");
            var generation = row.RestoreGeneration + 1;
            ctx.Connection.Execute(
                "UPDATE instances SET restore_generation = @generation, restore_snapshot = @name, version = version + 1, updated_at = @now WHERE id = @Id",
                new { generation, name, row.Id, now = Json.Now(time) }, ctx.Transaction);
            Notify(ctx, row);
            var how = row.DesiredPower != PowerStates.Running
                ? "restoring the disk (the VM stays stopped)"
                : snap.Memory != 0 ? "restoring disk and RAM" : "restoring the disk: stop, restore, start";
            return operations.Insert(ctx, "snapshot-restore", $"{instance}/{name}", row.Id, RestoreExpectation, generation, how,
                supersede: false, project: project, userId: caller.UserId);
        }, ct);

    public Task<Operation> DeleteAsync(Caller caller, string project, string instance, string name, CancellationToken ct) =>
        db.WriteAsync(ctx =>
        {
            var row = Usable(ctx, project, instance);
            var snap = Find(ctx, row.Id, name, instance);
            if (snap.State == SnapshotStates.Deleting)
                return operations.Insert(ctx, "snapshot-delete", $"{instance}/{name}", row.Id, DeletedExpectation(name), 0, "already being deleted",
                    supersede: false, project: project, userId: caller.UserId);
            ctx.Connection.Execute("UPDATE snapshots SET state = @state WHERE instance_id = @Id AND name = @name",
                new { state = SnapshotStates.Deleting, row.Id, name }, ctx.Transaction);
            Notify(ctx, row);
            return operations.Insert(ctx, "snapshot-delete", $"{instance}/{name}", row.Id, DeletedExpectation(name), 0, "deleting the snapshot",
                supersede: false, project: project, userId: caller.UserId);
        }, ct);

    /// <summary>The desired snapshots and restore of every instance on a node, for its desired state.</summary>
    internal static void AddDesired(Microsoft.Data.Sqlite.SqliteConnection c, string nodeId, IReadOnlyDictionary<string, DesiredInstance> instances)
    {
        var rows = c.Query<SnapshotRow>(
            "SELECT s.* FROM snapshots s JOIN instances i ON i.id = s.instance_id WHERE i.node_id = @nodeId ORDER BY s.created_at, s.name", new { nodeId });
        foreach (var s in rows)
        {
            if (instances.TryGetValue(s.InstanceId, out var d))
                d.Snapshots.Add(new DesiredSnapshot { Name = s.Name, Memory = s.Memory != 0, Deleting = s.State == SnapshotStates.Deleting });
        }
    }

    /// <summary>Applies what an agent found on an instance's disk: snapshots made or removed, a restore applied.</summary>
    internal void ApplyReport(WriteContext ctx, string nodeId, InstanceStatus status)
    {
        var instance = ctx.Connection.QuerySingleOrDefault<SnapshotInstanceRow>(
            "SELECT id, node_id, desired_power, restore_generation FROM instances WHERE id = @Id AND node_id = @nodeId",
            new { status.Id, nodeId }, ctx.Transaction);
        if (instance is null || status.Gone) return;
        if (status.SnapshotsListed)
        {
            var present = status.Snapshots.Where(s => s.Present).ToDictionary(s => s.Name, StringComparer.Ordinal);
            var failed = status.Snapshots.Where(s => s.Error.Length > 0).GroupBy(s => s.Name, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.First().Error, StringComparer.Ordinal);
            var changed = false;
            foreach (var row in ctx.Connection.Query<SnapshotRow>("SELECT * FROM snapshots WHERE instance_id = @Id", instance, ctx.Transaction).ToList())
            {
                if (row.State == SnapshotStates.Creating && present.TryGetValue(row.Name, out var made))
                {
                    ctx.Connection.Execute("UPDATE snapshots SET state = @state, memory = @memory WHERE instance_id = @InstanceId AND name = @Name",
                        new { state = SnapshotStates.Ready, memory = made.Memory ? 1 : 0, row.InstanceId, row.Name }, ctx.Transaction);
                    operations.Complete(ctx, instance.Id, CreatedExpectation(row.Name), 0, null, made.Memory ? "snapshot saved with RAM" : "snapshot saved (disk only)");
                }
                else if (row.State == SnapshotStates.Creating && failed.TryGetValue(row.Name, out var error))
                {
                    // Nothing was made: the row goes, so the name can be used again.
                    ctx.Connection.Execute("DELETE FROM snapshots WHERE instance_id = @InstanceId AND name = @Name", row, ctx.Transaction);
                    operations.Complete(ctx, instance.Id, CreatedExpectation(row.Name), 0, error, "snapshot failed");
                    changed = true;
                }
                else if (row.State == SnapshotStates.Deleting && !present.ContainsKey(row.Name))
                {
                    ctx.Connection.Execute("DELETE FROM snapshots WHERE instance_id = @InstanceId AND name = @Name", row, ctx.Transaction);
                    operations.Complete(ctx, instance.Id, DeletedExpectation(row.Name), 0, null, "snapshot deleted");
                    changed = true;
                }
                else if (row.State == SnapshotStates.Deleting && failed.TryGetValue(row.Name, out var deleteError))
                {
                    ctx.Connection.Execute("UPDATE snapshots SET state = @state WHERE instance_id = @InstanceId AND name = @Name",
                        new { state = SnapshotStates.Ready, row.InstanceId, row.Name }, ctx.Transaction);
                    operations.Complete(ctx, instance.Id, DeletedExpectation(row.Name), 0, deleteError, "snapshot delete failed");
                    changed = true;
                }
            }
            if (changed) ctx.OnCommit(() => signals.Notify(nodeId));
        }
        if (status.RestoredGeneration > 0)
        {
            if (status.RestoreError.Length > 0)
                operations.Complete(ctx, instance.Id, RestoreExpectation, status.RestoredGeneration, status.RestoreError, "restore failed");
            else if (instance.DesiredPower != PowerStates.Running || status.State == InstanceStates.Running)
                operations.Complete(ctx, instance.Id, RestoreExpectation, status.RestoredGeneration, null,
                    instance.DesiredPower == PowerStates.Running ? "restored; the VM is running" : "restored; the VM is stopped");
        }
    }

    /// <summary>Removes the snapshot rows of an instance being removed (its disk goes with it).</summary>
    internal static void RemoveAll(WriteContext ctx, string instanceId) =>
        ctx.Connection.Execute("DELETE FROM snapshots WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction);

    private InstanceRow Usable(WriteContext ctx, string project, string instance)
    {
        var row = FindInstance(ctx.Connection, ctx.Transaction, project, instance) ?? throw ProblemException.NotFound("instance", instance);
        if (row.Type != "vm")
            throw ProblemException.InvalidState($"'{instance}' is a {row.Type}; snapshots are for VMs");
        if (row.DesiredPower == PowerStates.Deleted)
            throw ProblemException.InvalidState($"instance '{instance}' is being deleted");
        if (row.NodeId is null)
            throw ProblemException.InvalidState($"instance '{instance}' has no node");
        return row;
    }

    private static SnapshotRow Find(WriteContext ctx, string instanceId, string name, string instance)
    {
        if (Names.Validate(name, "snapshot name") is { } invalid) throw ProblemException.Validation("snapshot", invalid);
        return ctx.Connection.QuerySingleOrDefault<SnapshotRow>("SELECT * FROM snapshots WHERE instance_id = @instanceId AND name = @name",
            new { instanceId, name }, ctx.Transaction) ?? throw ProblemException.NotFound("snapshot", $"{instance}/{name}");
    }

    private void Notify(WriteContext ctx, InstanceRow row)
    {
        var nodeId = row.NodeId!;
        ctx.OnCommit(() => signals.Notify(nodeId));
    }

    private static InstanceRow? FindInstance(Microsoft.Data.Sqlite.SqliteConnection c, Microsoft.Data.Sqlite.SqliteTransaction? tx, string project, string name) =>
        c.QuerySingleOrDefault<InstanceRow>("SELECT * FROM instances WHERE project = @project AND name = @name", new { project, name }, tx);

    private sealed class SnapshotInstanceRow
    {
        public string Id { get; set; } = "";
        public string? NodeId { get; set; }
        public string DesiredPower { get; set; } = "";
        public long RestoreGeneration { get; set; }
    }
}

internal sealed class SnapshotRow
{
    public string InstanceId { get; set; } = "";
    public string Name { get; set; } = "";
    public long Memory { get; set; }
    public string State { get; set; } = "";
    public string CreatedAt { get; set; } = "";

    public Snapshot ToApi(string instance) => new()
    {
        Name = Name,
        Instance = instance,
        Memory = Memory != 0,
        State = State,
        CreatedAt = Json.Time(CreatedAt),
    };
}
