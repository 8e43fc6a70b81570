using Dapper;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Operations;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Volumes;

/// <summary>
/// Volumes: qcow2 disks that are resources of their own, project-scoped by name. A volume has no node until its
/// first attach; from then on its file lives in that node's state dir and it can only be attached to VMs there.
/// Attachments are part of the VM's desired state, so they survive VM and agent restarts; the agent's reports
/// (attached volumes per instance, volume files per node) finish the operations.
/// </summary>
public sealed class VolumeService(Database db, OperationStore operations, NodeSignals signals, QuotaService quotas, TimeProvider time)
{
    /// <summary>PCIe root ports each VM gets at launch for hot-plug; one volume per port.</summary>
    public const int MaxAttachments = 4;

    private const string SelectVolume =
        "SELECT v.*, n.name AS node_name, i.name AS instance_name FROM volumes v LEFT JOIN nodes n ON n.id = v.node_id LEFT JOIN instances i ON i.id = v.instance_id";

    public static string AttachExpectation(string id) => "attach:" + id;

    public static string DetachExpectation(string id) => "detach:" + id;

    public static string SizeExpectation(string id) => "size:" + id;

    public static string GoneExpectation(string id) => "volume-gone:" + id;

    public Task<List<Volume>> ListAsync(string project, CancellationToken ct) =>
        db.ReadAsync(c => c.Query<VolumeRow>(SelectVolume + " WHERE v.project = @project ORDER BY v.name", new { project }).Select(v => v.ToApi()).ToList(), ct);

    public async Task<Volume> GetAsync(string project, string name, CancellationToken ct) =>
        (await db.ReadAsync(c => Find(c, null, project, name), ct))?.ToApi() ?? throw ProblemException.NotFound("volume", name);

    public async Task<Volume> CreateAsync(Caller caller, string project, VolumesPost? body, CancellationToken ct)
    {
        if (body is null)
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object with name and size");
        var errors = new Dictionary<string, string[]>();
        if (Names.Validate(body.Name, "volume name") is { } invalid) errors["name"] = [invalid];
        var size = ParseSize(body.Size, errors);
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        try
        {
            return await db.WriteAsync(ctx =>
            {
                // The disk quota counts volumes too; checked in the same write, so concurrent creates cannot overshoot.
                quotas.Check(ctx, caller, project, new QuotaService.Request("volume", 0, 0, size));
                var id = Ulid.NewUlid().ToString().ToLowerInvariant();
                ctx.Connection.Execute(
                    "INSERT INTO volumes (id, name, project, owner_id, size_bytes, state, created_at) VALUES (@id, @Name, @project, @owner, @size, @state, @now)",
                    new { id, body.Name, project, owner = caller.UserId, size, state = VolumeStates.Available, now = Json.Now(time) }, ctx.Transaction);
                return Find(ctx.Connection, ctx.Transaction, project, body.Name!)!.ToApi();
            }, ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"a volume named '{body.Name}' already exists");
        }
    }

    public Task<Operation> AttachAsync(Caller caller, string project, string name, VolumeAction? body, CancellationToken ct)
    {
        var instanceName = body?.Instance;
        if (Names.Validate(instanceName, "instance") is { } invalid) throw ProblemException.Validation("instance", invalid);
        return db.WriteAsync(ctx =>
        {
            var v = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("volume", name);
            var vm = ctx.Connection.QuerySingleOrDefault<InstanceRow>("SELECT * FROM instances WHERE project = @project AND name = @instanceName",
                new { project, instanceName }, ctx.Transaction) ?? throw ProblemException.NotFound("instance", instanceName!);
            if (v.InstanceId == vm.Id && v.State is VolumeStates.Attached or VolumeStates.Attaching)
                return operations.Insert(ctx, "volume-attach", $"{name}/{instanceName}", null, null, 0, $"volume {name} is already attached to {instanceName}",
                    project: project, userId: caller.UserId);
            if (v.InstanceId is not null)
                throw new ProblemException(409, ProblemTypes.VolumeInUse, "The volume is attached",
                    $"volume '{name}' is attached to '{v.InstanceName}'; detach it first (kumo volume detach {name} {v.InstanceName})");
            if (v.State == VolumeStates.Deleting) throw ProblemException.InvalidState($"volume '{name}' is being deleted");
            if (vm.Type != "vm") throw ProblemException.InvalidState($"'{instanceName}' is a {vm.Type}; volumes attach to VMs");
            if (vm.DesiredPower == PowerStates.Deleted) throw ProblemException.InvalidState($"instance '{instanceName}' is being deleted");
            if (vm.NodeId is null) throw ProblemException.InvalidState($"instance '{instanceName}' has no node");
            if (v.NodeId is not null && v.NodeId != vm.NodeId)
                throw ProblemException.InvalidState($"volume '{name}' is stored on node {v.NodeName} and '{instanceName}' runs elsewhere; volumes do not move between nodes yet");
            var count = ctx.Connection.ExecuteScalar<long>("SELECT count(*) FROM volumes WHERE instance_id = @Id", vm, ctx.Transaction);
            if (count >= MaxAttachments)
                throw ProblemException.InvalidState($"'{instanceName}' already has {count} volumes attached; the limit is {MaxAttachments}");
            ctx.Connection.Execute("UPDATE volumes SET node_id = @NodeId, instance_id = @vmId, state = @state WHERE id = @Id",
                new { vm.NodeId, vmId = vm.Id, state = VolumeStates.Attaching, v.Id }, ctx.Transaction);
            Notify(ctx, vm.NodeId);
            return operations.Insert(ctx, "volume-attach", $"{name}/{instanceName}", v.Id, AttachExpectation(v.Id), 0,
                $"attaching {name} to {instanceName}", supersede: false, project: project, userId: caller.UserId);
        }, ct);
    }

    public Task<Operation> DetachAsync(Caller caller, string project, string name, VolumeAction? body, CancellationToken ct) =>
        db.WriteAsync(ctx =>
        {
            var v = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("volume", name);
            if (body?.Instance is { } named && named != v.InstanceName)
                throw ProblemException.InvalidState(v.InstanceName is null
                    ? $"volume '{name}' is not attached"
                    : $"volume '{name}' is attached to '{v.InstanceName}', not '{named}'");
            if (v.InstanceId is null)
                return operations.Insert(ctx, "volume-detach", name, null, null, 0, $"volume {name} is not attached", project: project, userId: caller.UserId);
            ctx.Connection.Execute("UPDATE volumes SET state = @state WHERE id = @Id", new { state = VolumeStates.Detaching, v.Id }, ctx.Transaction);
            Notify(ctx, v.NodeId);
            return operations.Insert(ctx, "volume-detach", $"{name}/{v.InstanceName}", v.Id, DetachExpectation(v.Id), 0,
                $"detaching {name} from {v.InstanceName}", supersede: false, project: project, userId: caller.UserId);
        }, ct);

    public Task<Operation> ResizeAsync(Caller caller, string project, string name, VolumeAction? body, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        var size = ParseSize(body?.Size, errors);
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        return db.WriteAsync(ctx =>
        {
            var v = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("volume", name);
            if (size < v.SizeBytes)
                throw ProblemException.Validation("size", $"volumes only grow: '{name}' is {ByteSize.Human(v.SizeBytes)}, more than {ByteSize.Human(size)}");
            if (v.State == VolumeStates.Deleting) throw ProblemException.InvalidState($"volume '{name}' is being deleted");
            if (size == v.SizeBytes)
                return operations.Insert(ctx, "volume-resize", name, null, null, 0, $"volume {name} is already {ByteSize.Human(size)}", project: project, userId: caller.UserId);
            quotas.Check(ctx, caller, project, new QuotaService.Request("volume", 0, 0, size - v.SizeBytes));
            ctx.Connection.Execute("UPDATE volumes SET size_bytes = @size WHERE id = @Id", new { size, v.Id }, ctx.Transaction);
            if (v.NodeId is null)
                return operations.Insert(ctx, "volume-resize", name, null, null, 0, $"volume {name} is now {ByteSize.Human(size)}", project: project, userId: caller.UserId);
            Notify(ctx, v.NodeId);
            return operations.Insert(ctx, "volume-resize", name, v.Id, SizeExpectation(v.Id), size, $"growing {name} to {ByteSize.Human(size)}",
                supersede: false, project: project, userId: caller.UserId);
        }, ct);
    }

    public Task<Operation> DeleteAsync(Caller caller, string project, string name, CancellationToken ct) =>
        db.WriteAsync(ctx =>
        {
            var v = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("volume", name);
            if (v.InstanceId is not null)
                throw new ProblemException(409, ProblemTypes.VolumeInUse, "The volume is attached",
                    $"volume '{name}' is attached to '{v.InstanceName}'; detach it first (kumo volume detach {name} {v.InstanceName})");
            if (v.NodeId is null)
            {
                ctx.Connection.Execute("DELETE FROM volumes WHERE id = @Id", v, ctx.Transaction);
                return operations.Insert(ctx, "volume-delete", name, null, null, 0, $"volume {name} deleted", project: project, userId: caller.UserId);
            }
            ctx.Connection.Execute("UPDATE volumes SET state = @state WHERE id = @Id", new { state = VolumeStates.Deleting, v.Id }, ctx.Transaction);
            Notify(ctx, v.NodeId);
            return operations.Insert(ctx, "volume-delete", name, v.Id, GoneExpectation(v.Id), 0, $"deleting {name}",
                supersede: false, project: project, userId: caller.UserId);
        }, ct);

    /// <summary>The node's volumes (files that must exist) and each instance's attachments, for its desired state.</summary>
    internal static void AddDesired(SqliteConnection c, string nodeId, DesiredState state, IReadOnlyDictionary<string, DesiredInstance> instances)
    {
        foreach (var v in c.Query<VolumeRow>("SELECT * FROM volumes WHERE node_id = @nodeId ORDER BY id", new { nodeId }))
        {
            state.Volumes.Add(new DesiredVolume { Id = v.Id, SizeBytes = v.SizeBytes, Deleting = v.State == VolumeStates.Deleting });
            if (v.InstanceId is { } i && v.State is VolumeStates.Attaching or VolumeStates.Attached && instances.TryGetValue(i, out var d))
                d.Volumes.Add(new DesiredAttachment { VolumeId = v.Id, Name = v.Name });
        }
    }

    /// <summary>Applies an instance's reported attachments: finishes attaches and detaches.</summary>
    internal void ApplyInstanceReport(WriteContext ctx, string nodeId, InstanceStatus status)
    {
        if (!status.VolumesListed || status.Gone) return;
        var attached = status.Volumes.Where(a => a.Attached).Select(a => a.VolumeId).ToHashSet(StringComparer.Ordinal);
        var failed = status.Volumes.Where(a => a.Error.Length > 0).GroupBy(a => a.VolumeId, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.First().Error, StringComparer.Ordinal);
        foreach (var v in ctx.Connection.Query<VolumeRow>("SELECT * FROM volumes WHERE instance_id = @Id AND node_id = @nodeId",
            new { status.Id, nodeId }, ctx.Transaction).ToList())
        {
            if (v.State == VolumeStates.Attaching && attached.Contains(v.Id))
            {
                SetState(ctx, v.Id, VolumeStates.Attached, keepInstance: true);
                operations.Complete(ctx, v.Id, AttachExpectation(v.Id), 0, null, "attached");
            }
            else if (v.State == VolumeStates.Attaching && failed.TryGetValue(v.Id, out var error))
            {
                SetState(ctx, v.Id, VolumeStates.Available, keepInstance: false);
                operations.Complete(ctx, v.Id, AttachExpectation(v.Id), 0, error, "attach failed");
                Notify(ctx, nodeId);
            }
            else if (v.State == VolumeStates.Detaching && !attached.Contains(v.Id))
            {
                SetState(ctx, v.Id, VolumeStates.Available, keepInstance: false);
                operations.Complete(ctx, v.Id, DetachExpectation(v.Id), 0, null, "detached");
            }
            else if (v.State == VolumeStates.Detaching && failed.TryGetValue(v.Id, out var detachError))
            {
                SetState(ctx, v.Id, VolumeStates.Attached, keepInstance: true);
                operations.Complete(ctx, v.Id, DetachExpectation(v.Id), 0, detachError, "detach failed");
                Notify(ctx, nodeId);
            }
        }
    }

    /// <summary>Applies a node's volume files as found: sizes reached, deleted files gone.</summary>
    internal void ApplyNodeReport(WriteContext ctx, string nodeId, IEnumerable<VolumeStatus> statuses)
    {
        foreach (var s in statuses)
        {
            var v = ctx.Connection.QuerySingleOrDefault<VolumeRow>("SELECT * FROM volumes WHERE id = @Id AND node_id = @nodeId", new { s.Id, nodeId }, ctx.Transaction);
            if (v is null) continue;
            if (s.Gone)
            {
                if (v.State != VolumeStates.Deleting) continue;
                ctx.Connection.Execute("DELETE FROM volumes WHERE id = @Id", v, ctx.Transaction);
                operations.Complete(ctx, v.Id, GoneExpectation(v.Id), 0, null, "deleted");
                continue;
            }
            if (s.Error.Length > 0)
                operations.Complete(ctx, v.Id, SizeExpectation(v.Id), long.MaxValue, s.Error, "resize failed");
            else
                operations.Complete(ctx, v.Id, SizeExpectation(v.Id), s.SizeBytes, null, $"grown to {ByteSize.Human(s.SizeBytes)}");
        }
    }

    /// <summary>An instance is removed: its volumes stay, detached (its guest is gone with it).</summary>
    internal static void DetachAll(WriteContext ctx, OperationStore operations, string instanceId)
    {
        foreach (var v in ctx.Connection.Query<VolumeRow>("SELECT * FROM volumes WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction).ToList())
        {
            SetState(ctx, v.Id, VolumeStates.Available, keepInstance: false);
            operations.Complete(ctx, v.Id, AttachExpectation(v.Id), long.MaxValue, "the instance was deleted", "attach failed");
            operations.Complete(ctx, v.Id, DetachExpectation(v.Id), long.MaxValue, null, "detached: the instance was deleted");
        }
    }

    private static void SetState(WriteContext ctx, string id, string state, bool keepInstance) =>
        ctx.Connection.Execute(
            keepInstance ? "UPDATE volumes SET state = @state WHERE id = @id" : "UPDATE volumes SET state = @state, instance_id = NULL WHERE id = @id",
            new { state, id }, ctx.Transaction);

    private void Notify(WriteContext ctx, string? nodeId)
    {
        if (nodeId is not null) ctx.OnCommit(() => signals.Notify(nodeId));
    }

    private static long ParseSize(string? text, Dictionary<string, string[]> errors)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            errors["size"] = ["size is required, e.g. 2G"];
            return 0;
        }
        if (!ByteSize.TryParse(text, out var size, out var error))
        {
            errors["size"] = [error!];
            return 0;
        }
        if (size < ByteSize.MiB || size > 4 * 1024 * ByteSize.GiB)
            errors["size"] = [$"size must be between 1M and 4T, not {text}"];
        return size;
    }

    private static VolumeRow? Find(SqliteConnection c, SqliteTransaction? tx, string project, string name) =>
        c.QuerySingleOrDefault<VolumeRow>(SelectVolume + " WHERE v.project = @project AND v.name = @name", new { project, name }, tx);
}

internal sealed class VolumeRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Project { get; set; } = "";
    public string? OwnerId { get; set; }
    public long SizeBytes { get; set; }
    public string? NodeId { get; set; }
    public string? InstanceId { get; set; }
    public string State { get; set; } = "";
    public string CreatedAt { get; set; } = "";
    public string? NodeName { get; set; }
    public string? InstanceName { get; set; }

    public Volume ToApi() => new()
    {
        Id = Id,
        Name = Name,
        Project = Project,
        SizeBytes = SizeBytes,
        Node = NodeName,
        AttachedTo = InstanceName,
        State = State,
        CreatedAt = Json.Time(CreatedAt),
    };
}
