using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Networking;
using Kumo.Server.Operations;
using Kumo.Server.Scheduling;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Instances;

/// <summary>
/// Instance lifecycle on the control-plane side: every change is one write that updates the desired state,
/// records an operation and, once durable, wakes the node's agent. Agents report what they observe; the
/// reports finish the operations.
/// </summary>
public sealed class InstanceService(
    Database db, Scheduler scheduler, OperationStore operations, NodeSignals signals, QuotaService quotas,
    IOptions<InstanceDefaults> defaults, TimeProvider time, NetworkService networks)
{
    /// <summary>The shared project that holds resources created before identity existed.</summary>
    public const string DefaultProject = "default";

    private const string SelectWithNode =
        "SELECT i.*, n.name AS node_name, u.name AS owner_name FROM instances i LEFT JOIN nodes n ON n.id = i.node_id LEFT JOIN users u ON u.id = i.owner_id";

    /// <remarks>The project has already been resolved for the caller (membership checked).</remarks>
    public Task<List<Instance>> ListAsync(string project, string? state, string? type, CancellationToken ct) =>
        db.ReadAsync(c =>
        {
            var rows = c.Query<InstanceRow>(
                SelectWithNode + " WHERE i.project = @project AND (@state IS NULL OR i.state = @state) AND (@type IS NULL OR i.type = @type) ORDER BY i.name",
                new { project, state, type }).ToList();
            var nics = NetworkService.NicsOf(c, null, rows.Select(r => r.Id));
            return rows.Select(r => r.ToApi() with { Nics = nics[r.Id].ToList() }).ToList();
        }, ct);

    public async Task<Instance> GetAsync(string project, string name, CancellationToken ct) =>
        await db.ReadAsync(c => Find(c, null, project, name) is { } r
            ? r.ToApi() with { Nics = NetworkService.NicsOf(c, null, [r.Id])[r.Id].ToList() }
            : null, ct) ?? throw ProblemException.NotFound("instance", name);

    /// <summary>
    /// An instance for something only its owner and admins may do (<paramref name="what"/>: console, debug). Outside the
    /// caller's projects it does not exist (404, from the project check); a co-member of the project who is not the
    /// owner may see it but not use it (403).
    /// </summary>
    internal async Task<InstanceRow> GetOwnedAsync(Caller caller, string project, string name, string what, CancellationToken ct)
    {
        var row = await db.ReadAsync(c => Find(c, null, project, name), ct) ?? throw ProblemException.NotFound("instance", name);
        if (!caller.IsAdmin && row.OwnerId != caller.UserId)
            throw new ProblemException(403, ProblemTypes.Forbidden, "Forbidden", $"only the owner of '{name}' and administrators may use its {what}");
        return row;
    }

    public async Task<Operation> CreateAsync(Caller caller, string project, InstancesPost? body, CancellationToken ct)
    {
        var (req, image, passwordHash) = await PrepareAnyAsync(caller, project, body, ct);
        try
        {
            return await db.WriteAsync(ctx => Create(ctx, caller, project, req, image, passwordHash).Operation, ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"an instance named '{req.Name}' already exists");
        }
    }

    /// <summary>
    /// A create request checked before any write: fields, image, cloud-init needs and node; the password is hashed
    /// here (it is never kept). Shared by creating now and reserving for later.
    /// </summary>
    internal async Task<(ValidCreate Request, ImageRow Image, string? PasswordHash)> PrepareAsync(Caller caller, string project, InstancesPost? body, CancellationToken ct)
    {
        var (req, image, passwordHash) = await PrepareAnyAsync(caller, project, body, ct);
        return (req, image ?? throw ProblemException.Validation("image", $"'{req.Image}' is a registry image; only containers run those"), passwordHash);
    }

    /// <summary>As <see cref="PrepareAsync"/>, but a container may name a registry image, which has no row (null).</summary>
    private async Task<(ValidCreate Request, ImageRow? Image, string? PasswordHash)> PrepareAnyAsync(Caller caller, string project, InstancesPost? body, CancellationToken ct)
    {
        var req = InstanceRequestValidator.Validate(body, defaults.Value, caller.UserName);
        // Lookups that need no transaction run on a reader, keeping the single writer free for placements.
        // The project's own image first, then one shared through 'default' or 'system'.
        // A registry image is no row of Kumo's: the node pulls it when it creates the container.
        var pulled = req.Type == InstanceTypes.Container && RegistryReferences.IsReference(req.Image);
        var image = pulled
            ? null
            : await db.ReadAsync(c => FindImage(c, null, project, req.Type, req.Image), ct)
                ?? throw ProblemException.Validation("image", $"image '{req.Image}' does not exist (see: kumo image list)");
        // A disk smaller than the image would cut the guest's file systems off: it gets at least the image's size.
        if (image?.VirtualSizeBytes is { } least && req.DiskBytes < least) req = req with { DiskBytes = least };
        if ((req.SshKeys.Count > 0 || req.Password is not null) && image?.Sha256 is null)
            throw ProblemException.Validation("sshKeys", $"image '{req.Image}' has no cloud-init: SSH keys and passwords need an imported or built image");
        // A built container image lives in one node's engine: its containers run there.
        if (image?.NodeId is { } imageNode)
        {
            var nodeName = await db.ReadAsync(c => c.QuerySingleOrDefault<string?>("SELECT name FROM nodes WHERE id = @imageNode", new { imageNode }), ct)
                ?? throw ProblemException.Validation("image", $"image '{image.Name}' was built on a node that was removed; build it again");
            if (req.Node is not null && req.Node != nodeName)
                throw ProblemException.Validation("node", $"image '{image.Name}' was built on node {nodeName}; its containers run there (leave --node out)");
            req = req with { Node = nodeName };
        }
        if (req.Template is { } templateName)
        {
            // The VM keeps the template as it is now: a later change or removal of the template leaves it alone.
            var xml = await db.ReadAsync(c => c.QuerySingleOrDefault<string?>("SELECT xml FROM domain_templates WHERE name = @templateName", new { templateName }), ct)
                ?? throw ProblemException.Validation("template", $"template '{templateName}' does not exist (see: kumo template list)");
            req = req with { TemplateXml = xml };
        }
        var passwordHash = req.Password is null ? null : await PasswordCrypt.HashAsync(req.Password, ct);
        if (req.Node is not null && !scheduler.HasNode(req.Node))
            throw ProblemException.Validation("node", $"node '{req.Node}' does not exist (see: kumo node list)");
        return (req, image, passwordHash);
    }

    /// <summary>The project's own image first, then one shared through 'default' or 'system'.</summary>
    internal static ImageRow? FindImage(SqliteConnection c, SqliteTransaction? tx, string project, string type, string name) =>
        c.QueryFirstOrDefault<ImageRow>(
            "SELECT * FROM images WHERE project IN (@project, @default, 'system') AND type = @type AND name = @name ORDER BY project = 'system', project = @default",
            new { project, @default = DefaultProject, type, name }, tx);

    /// <summary>Result of a create inside a write: its operation, the new instance's id and the node it was placed on.</summary>
    internal readonly record struct Created(Operation Operation, string InstanceId, string NodeName);

    /// <summary>
    /// Creates an instance inside the caller's write: quota, placement, the row, IPAM on every network in
    /// <paramref name="nicNetworks"/> (the request's own network when null), and the create operation.
    /// </summary>
    /// <remarks>A duplicate name is caught by the UNIQUE constraint on insert; the savepoint undoes the placement.</remarks>
    /// <param name="image">Null for a container of a registry image (the node pulls <c>req.Image</c>).</param>
    internal Created Create(WriteContext ctx, Caller caller, string project, ValidCreate req, ImageRow? image, string? passwordHash,
        IReadOnlyList<string>? nicNetworks = null, string? clusterId = null, IReadOnlyDictionary<string, string>? excludedNodes = null)
    {
        nicNetworks ??= req.Network is null ? [] : [req.Network];
        // Quota and placement in the same write: concurrent creates cannot overshoot either.
        quotas.Check(ctx, caller, project, new QuotaService.Request(req.Type, req.Cpus, req.MemoryBytes, req.DiskBytes));

        Scheduler.NodeView node;
        try
        {
            Dictionary<string, string>? excluded = excludedNodes is null ? null : new Dictionary<string, string>(excludedNodes, StringComparer.Ordinal);
            foreach (var network in nicNetworks)
            {
                excluded ??= new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var (excludedNode, why) in NetworkService.NodesWithOverlappingNetworks(ctx, project, network)) excluded.TryAdd(excludedNode, why);
            }
            node = scheduler.Place(ctx, new PlacementRequest(req.Cpus, req.MemoryBytes, req.Node, req.NodeSelector, excluded));
        }
        catch (NoCapacityException e)
        {
            throw new ProblemException(409, ProblemTypes.NoCapacity, "No node can host this instance",
                $"no node has room for {req.Cpus} vCPU and {ByteSize.Human(req.MemoryBytes)} memory: "
                + string.Join("; ", e.Rejections.Select(r => $"{r.Key}: {r.Value}")))
            { Rejections = e.Rejections };
        }

        var container = req.Container is { } spec ? spec with { Ports = AllocatePorts(ctx, node.Id, spec.Ports, req.Name) } : null;
        var now = Json.Now(time);
        var row = new InstanceRow
        {
            Id = Ulid.NewUlid().ToString().ToLowerInvariant(),
            Name = req.Name,
            Project = project,
            OwnerId = caller.UserId,
            Type = req.Type,
            Image = image?.Name ?? req.Image,
            ImageId = image?.Id,
            SshKeys = req.SshKeys.Count > 0 ? string.Join('\n', req.SshKeys) : null,
            PasswordHash = passwordHash,
            Cpus = req.Cpus,
            MemoryBytes = req.MemoryBytes,
            DiskBytes = req.DiskBytes,
            NodeId = node.Id,
            State = InstanceStates.Creating,
            DesiredPower = req.Stopped ? PowerStates.Stopped : PowerStates.Running,
            StopMode = StopModes.Graceful,
            BootGeneration = req.Stopped ? 0 : 1,
            StatusMessage = $"placed on {node.Name}",
            Labels = Json.Labels(req.Labels),
            Description = req.Description,
            Container = Json.Container(container),
            ClusterId = clusterId,
            Version = 1,
            CreatedAt = now,
            UpdatedAt = now,
        };
        ctx.Execute(
            """
            INSERT INTO instances (id, name, project, owner_id, type, image, cpus, memory_bytes, disk_bytes, node_id, state, desired_power,
                stop_mode, boot_generation, status_message, labels, description, version, created_at, updated_at, image_id, ssh_keys, password_hash, container, cluster_id)
            VALUES ($id, $name, $project, $owner, $type, $image, $cpus, $memory, $disk, $node, $state, $desired,
                $stop, $gen, $message, $labels, $description, $version, $created, $updated, $imageId, $sshKeys, $passwordHash, $container, $cluster)
            """,
            ("$container", row.Container), ("$cluster", row.ClusterId),
            ("$imageId", row.ImageId), ("$sshKeys", row.SshKeys), ("$passwordHash", row.PasswordHash),
            ("$id", row.Id), ("$name", row.Name), ("$project", row.Project), ("$owner", row.OwnerId), ("$type", row.Type), ("$image", row.Image),
            ("$cpus", row.Cpus), ("$memory", row.MemoryBytes), ("$disk", row.DiskBytes), ("$node", row.NodeId), ("$state", row.State),
            ("$desired", row.DesiredPower), ("$stop", row.StopMode), ("$gen", row.BootGeneration), ("$message", row.StatusMessage),
            ("$labels", row.Labels), ("$description", row.Description), ("$version", row.Version), ("$created", row.CreatedAt),
            ("$updated", row.UpdatedAt));
        if (req.Template is not null)
            ctx.Connection.Execute("UPDATE instances SET template = @Template, template_xml = @TemplateXml WHERE id = @Id",
                new { req.Template, req.TemplateXml, row.Id }, ctx.Transaction);
        // IPAM in the same write: a failure further on gives the address back with everything else.
        foreach (var network in nicNetworks) networks.Allocate(ctx, project, network, row.Id, row.Name);
        var op = operations.Insert(ctx, "create", req.Name, row.Id,
            req.Stopped ? InstanceStates.Stopped : InstanceStates.Running, row.BootGeneration, $"placed on node {node.Name}", supersede: false,
            project: project, userId: caller.UserId);
        var nodeId = node.Id;
        ctx.OnCommit(() => signals.Notify(nodeId));
        // Other nodes on the network learn the new guest's name and, with VXLAN, this node as a peer.
        if (nicNetworks.Count > 0) ctx.OnCommit(signals.NotifyAll);
        return new Created(op, row.Id, node.Name);
    }

    /// <summary>
    /// Host ports for a container's published ports: the lowest free ones of the pool on its node. Runs inside the
    /// placing write, so two creates never get the same port; a deleted container's ports are free again at once.
    /// </summary>
    private List<PortMapping> AllocatePorts(WriteContext ctx, string nodeId, IReadOnlyList<PortMapping> wanted, string name)
    {
        if (wanted.Count == 0) return [];
        var used = new HashSet<int>();
        foreach (var json in ctx.Connection.Query<string>(
            "SELECT container FROM instances WHERE node_id = @nodeId AND container IS NOT NULL", new { nodeId }, ctx.Transaction))
        {
            foreach (var p in Json.Container(json)?.Ports ?? []) used.Add(p.HostPort);
        }
        var (first, last) = (defaults.Value.PortPoolFirst, defaults.Value.PortPoolLast);
        var result = new List<PortMapping>();
        var next = first;
        foreach (var p in wanted)
        {
            while (next <= last && used.Contains(next)) next++;
            if (next > last)
                throw new ProblemException(409, ProblemTypes.NoCapacity, "No free host port",
                    $"the node's port pool {first}-{last} is used up; '{name}' cannot publish port {p.ContainerPort}");
            result.Add(p with { HostPort = next, HostIp = "127.0.0.1" });
            used.Add(next);
        }
        return result;
    }

    public Task<Operation> ActAsync(Caller caller, string project, string name, string action, CancellationToken ct) =>
        db.WriteAsync(ctx => Act(ctx, caller, project, name, action), ct);

    private Operation Act(WriteContext ctx, Caller caller, string project, string name, string action)
    {
        var row = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("instance", name);
        if (row.DesiredPower == PowerStates.Deleted)
            throw ProblemException.InvalidState($"instance '{name}' is being deleted");
        if (LiveMigration.MigrationService.InFlight(ctx, row.Id))
            throw ProblemException.InvalidState($"instance '{name}' is being migrated; wait for the migration to finish");
        var running = row.DesiredPower == PowerStates.Running;
        switch (action)
        {
            case "start" when running && row.State == InstanceStates.Running:
            case "stop" when !running && row.State == InstanceStates.Stopped && row.StopMode == StopModes.Graceful:
            case "destroy" when !running && row.State == InstanceStates.Stopped:
                return operations.Insert(ctx, action, name, null, null, 0, $"instance is already {row.State}", project: project, userId: caller.UserId);
            case "start" or "restart":
                row.DesiredPower = PowerStates.Running;
                row.BootGeneration++;
                break;
            case "stop":
                row.DesiredPower = PowerStates.Stopped;
                row.StopMode = StopModes.Graceful;
                break;
            case "destroy":
                row.DesiredPower = PowerStates.Stopped;
                row.StopMode = StopModes.Force;
                break;
            default:
                throw ProblemException.Validation("action", $"unknown action '{action}'; use start, stop, restart or destroy");
        }
        Save(ctx, row);
        var expect = row.DesiredPower == PowerStates.Running ? InstanceStates.Running : InstanceStates.Stopped;
        return operations.Insert(ctx, action, name, row.Id, expect, row.BootGeneration, $"{action} requested", project: project, userId: caller.UserId);
    }

    public Task<Operation> DeleteAsync(Caller caller, string project, string name, bool force, CancellationToken ct) =>
        db.WriteAsync(ctx => Delete(ctx, caller, project, name, force), ct);

    /// <summary>Force-deletes every instance a user owns and waits until they are gone (user deletion).</summary>
    public async Task DeleteAllOwnedAsync(Caller caller, string ownerId, CancellationToken ct)
    {
        Task<List<(string Project, string Name, string? NodeId)>> OwnedAsync() => db.ReadAsync(c => c.Query<(string Project, string Name, string? NodeId)>(
            "SELECT project, name, node_id FROM instances WHERE owner_id = @ownerId", new { ownerId }).ToList(), ct);
        var owned = await OwnedAsync();
        foreach (var (project, name, _) in owned) await ForceDeleteAsync(project, name);
        var deadline = time.GetUtcNow() + TimeSpan.FromMinutes(2);
        while ((owned = await OwnedAsync()).Count > 0)
        {
            if (time.GetUtcNow() > deadline)
                throw ProblemException.InvalidState("the user's instances are still being deleted; try again shortly");
            await Task.Delay(200, ct);
            // A node that went down while we waited will never confirm; a forced delete removes its instances at once.
            foreach (var (project, name, nodeId) in owned.Where(o => o.NodeId is not null && scheduler.NodeState(o.NodeId) == NodeStates.Down))
                await ForceDeleteAsync(project, name);
        }

        async Task ForceDeleteAsync(string project, string name)
        {
            try
            {
                await DeleteAsync(caller, project, name, force: true, ct);
            }
            catch (ProblemException e) when (e.Status == 404)
            {
                // Gone since we listed it: that is what we wanted.
            }
        }
    }

    /// <remarks>The cluster service deletes members with force; a user's plain delete of one is refused (use the cluster's commands).</remarks>
    internal Operation Delete(WriteContext ctx, Caller caller, string project, string name, bool force)
    {
        var row = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("instance", name);
        if (row.ClusterId is not null && !force)
        {
            var kind = ctx.Connection.ExecuteScalar<string?>("SELECT kind FROM clusters WHERE id = @ClusterId", row, ctx.Transaction);
            throw ProblemException.InvalidState(kind == ReservationKinds.Vm
                ? $"instance '{name}' is a reserved VM; kumo reservation delete {name} ends the reservation (or --force to delete just the VM and release the rest of the window)"
                : $"instance '{name}' is a member of a virtual cluster; use kumo cluster scale or kumo cluster delete (or --force to remove just this member)");
        }
        var active = row.State is InstanceStates.Running or InstanceStates.Starting or InstanceStates.Stopping or InstanceStates.Creating
            || row.DesiredPower == PowerStates.Running;
        if (active && !force && row.DesiredPower != PowerStates.Deleted)
            throw ProblemException.InvalidState($"instance '{name}' is {row.State}; stop it first or delete with --force");
        // A forced delete calls a migration in flight off first: the target drops its waiting copy.
        LiveMigration.MigrationService.Forget(ctx, scheduler, operations, signals, row, "the VM was deleted");
        if (row.NodeId is null || scheduler.NodeState(row.NodeId) == NodeStates.Down && force)
        {
            // Nobody can confirm the delete; remove it now. A returning agent drops guests it is no longer assigned.
            Remove(ctx, row, "deleted while its node was unreachable");
            return operations.Insert(ctx, "delete", name, null, null, 0, "deleted (node unreachable)", project: project, userId: caller.UserId);
        }
        row.DesiredPower = PowerStates.Deleted;
        row.StopMode = StopModes.Force;
        row.State = InstanceStates.Deleting;
        Save(ctx, row);
        return operations.Insert(ctx, "delete", name, row.Id, PowerStates.Deleted, 0, "delete requested", project: project, userId: caller.UserId);
    }

    public Task<Instance> PutAsync(string project, string name, InstancePut? put, long? ifMatch, CancellationToken ct)
    {
        if (put is null)
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object");
        var errors = new Dictionary<string, List<string>>();
        InstanceRequestValidator.ValidateLabels(put.Labels, "labels", (f, m) => (errors.TryGetValue(f, out var l) ? l : errors[f] = []).Add(m));
        if (put.Description is { Length: > InstanceRequestValidator.MaxDescription })
            errors["description"] = [$"description is longer than {InstanceRequestValidator.MaxDescription} characters"];
        if (errors.Count > 0) throw ProblemException.Validation(errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
        return db.WriteAsync(ctx =>
        {
            var row = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("instance", name);
            if (ifMatch is not null && row.Version != ifMatch)
                throw new ProblemException(412, ProblemTypes.PreconditionFailed, "The instance changed since you read it",
                    $"If-Match version {ifMatch} is stale; the current version is {row.Version}; read it again and retry");
            if (put.Labels is not null) row.Labels = Json.Labels(put.Labels);
            if (put.Description is not null) row.Description = put.Description;
            Save(ctx, row, notify: false);
            return row.ToApi();
        }, ct);
    }

    /// <summary>Applies an agent's observations: state, progress, completion of operations, removal after delete.</summary>
    internal void ApplyStatus(WriteContext ctx, string nodeId, string id, string state, string? message, long generation, bool gone)
    {
        var row = ctx.Connection.QuerySingleOrDefault<InstanceRow>(SelectWithNode + " WHERE i.id = @id AND i.node_id = @nodeId",
            new { id, nodeId }, ctx.Transaction);
        if (row is null) return;
        if (gone)
        {
            if (row.DesiredPower != PowerStates.Deleted) return;
            operations.Observe(ctx, id, state, generation, gone: true, "deleted");
            Remove(ctx, row, null);
            return;
        }
        if (!InstanceStates.All.Contains(state)) return;
        // A guest that powered itself off (or died) at the generation we asked for stays off, as a real machine would.
        if (state == InstanceStates.Stopped && row.DesiredPower == PowerStates.Running && generation >= row.BootGeneration && row.BootGeneration > 0)
            row.DesiredPower = PowerStates.Stopped;
        var shown = row.DesiredPower == PowerStates.Deleted ? InstanceStates.Deleting : state;
        if (row.State != shown || row.StatusMessage != message)
        {
            row.State = shown;
            row.StatusMessage = message;
            Save(ctx, row, notify: false);
        }
        operations.Observe(ctx, id, state, generation, gone: false, message);
        if (shown == InstanceStates.Running)
            OpenUsage(ctx, row);
        else
            CloseUsage(ctx, row.Id);
    }

    /// <summary>Starts a usage interval for a running instance, unless one is open already.</summary>
    private void OpenUsage(WriteContext ctx, InstanceRow row) =>
        ctx.Connection.Execute(
            """
            INSERT INTO usage_intervals (instance_id, instance_name, owner_id, project, cpus, memory_bytes, disk_bytes, started_at)
            SELECT @Id, @Name, @OwnerId, @Project, @Cpus, @MemoryBytes, @DiskBytes, @now
            WHERE NOT EXISTS (SELECT 1 FROM usage_intervals WHERE instance_id = @Id AND ended_at IS NULL)
            """,
            new { row.Id, row.Name, row.OwnerId, row.Project, row.Cpus, row.MemoryBytes, row.DiskBytes, now = Json.Now(time) }, ctx.Transaction);

    /// <summary>Ends the open usage interval of an instance, if any.</summary>
    private void CloseUsage(WriteContext ctx, string instanceId) =>
        ctx.Connection.Execute("UPDATE usage_intervals SET ended_at = @now WHERE instance_id = @instanceId AND ended_at IS NULL",
            new { instanceId, now = Json.Now(time) }, ctx.Transaction);

    /// <summary>Marks every instance of a node lost (missed heartbeats).</summary>
    internal void MarkLost(WriteContext ctx, string nodeId)
    {
        ctx.Connection.Execute(
            "UPDATE instances SET state = 'lost', status_message = 'node stopped sending heartbeats', version = version + 1, updated_at = @now WHERE node_id = @nodeId AND state <> 'lost'",
            new { nodeId, now = Json.Now(time) }, ctx.Transaction);
        // Lost is not running: usage stops until the agent reports the instance running again.
        ctx.Connection.Execute(
            "UPDATE usage_intervals SET ended_at = @now WHERE ended_at IS NULL AND instance_id IN (SELECT id FROM instances WHERE node_id = @nodeId)",
            new { nodeId, now = Json.Now(time) }, ctx.Transaction);
    }

    /// <summary>Deletes every instance row of a node being removed by force.</summary>
    internal void RemoveAllOnNode(WriteContext ctx, string nodeId)
    {
        foreach (var row in ctx.Connection.Query<InstanceRow>("SELECT * FROM instances WHERE node_id = @nodeId", new { nodeId }, ctx.Transaction).ToList())
            Remove(ctx, row, "its node was removed");
    }

    private void Remove(WriteContext ctx, InstanceRow row, string? failOpsWith)
    {
        // Operations still open (a snapshot being made, say) can no longer finish once the instance is gone.
        LiveMigration.MigrationService.Forget(ctx, scheduler, operations, signals, row, failOpsWith ?? "the instance was deleted");
        operations.FailAll(ctx, row.Id, failOpsWith ?? "the instance was deleted");
        Snapshots.SnapshotService.RemoveAll(ctx, row.Id);
        Volumes.VolumeService.DetachAll(ctx, operations, row.Id);
        CloseUsage(ctx, row.Id);
        if (NetworkService.Release(ctx, row.Id) > 0) ctx.OnCommit(signals.NotifyAll);
        Monitoring.MeasuredUsage.Forget(ctx, row.Id);
        ctx.Connection.Execute("DELETE FROM instances WHERE id = @Id", row, ctx.Transaction);
        if (row.NodeId is { } nodeId)
        {
            scheduler.Release(ctx, nodeId, (int)row.Cpus, row.MemoryBytes);
            ctx.OnCommit(() => signals.Notify(nodeId));
        }
    }

    private void Save(WriteContext ctx, InstanceRow row, bool notify = true)
    {
        row.Version++;
        row.UpdatedAt = Json.Now(time);
        ctx.Connection.Execute(
            """
            UPDATE instances SET state = @State, desired_power = @DesiredPower, stop_mode = @StopMode, boot_generation = @BootGeneration,
                status_message = @StatusMessage, labels = @Labels, description = @Description, version = @Version, updated_at = @UpdatedAt
            WHERE id = @Id
            """, row, ctx.Transaction);
        // A gdb stub lives only while its VM is meant to run: stopping (or the guest's own power-off) frees the port
        // in this same write, so no crash can leave it allocated.
        if (row.DesiredPower != PowerStates.Running)
            ctx.Connection.Execute("DELETE FROM debug_ports WHERE instance_id = @Id", row, ctx.Transaction);
        if (notify && row.NodeId is { } nodeId) ctx.OnCommit(() => signals.Notify(nodeId));
    }

    private static InstanceRow? Find(SqliteConnection c, SqliteTransaction? tx, string project, string name) =>
        c.QuerySingleOrDefault<InstanceRow>(SelectWithNode + " WHERE i.project = @project AND i.name = @name",
            new { project, name }, tx);
}
