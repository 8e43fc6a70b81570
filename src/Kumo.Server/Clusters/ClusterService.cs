using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Instances;
using Kumo.Server.Networking;
using Kumo.Server.Operations;
using Kumo.Server.Scheduling;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Clusters;

public sealed record ClusterOptions
{
    /// <summary>Most compute nodes one cluster may have (a validation limit, not a quota).</summary>
    public int MaxNodes { get; init; } = 64;

    /// <summary>How long before a reservation ends its owner is warned (at most a fifth of the window).</summary>
    public TimeSpan WarnBefore { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How often the reconciler looks at clusters (reservation starts/ends, member states).</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Where private subnets are picked when the request names none: the first free /24 in here.</summary>
    public string SubnetPool { get; init; } = "10.224.0.0/11";
}

/// <summary>
/// Virtual clusters: one write creates the networks, every member (quota and placement per member) and the
/// frontend's port forward, so a refusal leaves nothing behind. The <see cref="ClusterReconciler"/> then watches the
/// members: all running makes the cluster ready; a member failing while the cluster is being created rolls the whole
/// cluster back. Reservations keep the same row in state scheduled until their window opens.
/// </summary>
public sealed class ClusterService(
    Database db, InstanceService instances, NetworkService networks, PortForwardService forwards, OperationStore operations,
    Monitoring.MetricsStore metrics, IOptions<ClusterOptions> options, IOptions<InstanceDefaults> defaults, IOptions<SchedulerOptions> ratios, TimeProvider time)
{
    private const string Select =
        "SELECT c.*, u.name AS owner_name, n.name AS node_name FROM clusters c LEFT JOIN users u ON u.id = c.owner_id LEFT JOIN nodes n ON n.id = c.node_id";

    private ClusterOptions Options => options.Value;

    public Task<List<Cluster>> ListAsync(string project, CancellationToken ct) =>
        db.ReadAsync(c => c.Query<ClusterRow>(Select + " WHERE c.project = @project AND c.kind = 'cluster' ORDER BY c.name", new { project })
            .Select(r => r.ToApi(Members(c, null, r))).ToList(), ct);

    public async Task<Cluster> GetAsync(string project, string name, CancellationToken ct) =>
        await db.ReadAsync(c => Find(c, null, project, name) is { } r ? r.ToApi(Members(c, null, r)) : null, ct)
        ?? throw ProblemException.NotFound("cluster", name);

    public Task<List<Reservation>> ReservationsAsync(string project, CancellationToken ct) =>
        db.ReadAsync(c => c.Query<ClusterRow>(Select + " WHERE c.project = @project AND c.end_at IS NOT NULL ORDER BY c.start_at, c.name", new { project })
            .Select(r => r.ToReservation()).ToList(), ct);

    public async Task<Reservation> ReservationAsync(string project, string name, CancellationToken ct) =>
        await db.ReadAsync(c => FindAny(c, null, project, name) is { EndAt: not null } r ? r.ToReservation() : null, ct)
        ?? throw ProblemException.NotFound("reservation", name);

    /// <summary>Validated request, with defaults filled in.</summary>
    internal sealed record ValidCluster(
        string Name, int Nodes, string FrontendImage, int FrontendCpus, long FrontendMemory, string NodeImage, int NodeCpus, long NodeMemory,
        Cidr? Subnet, string? Network, int ExposePort, DateTimeOffset? Start, DateTimeOffset? End);

    internal ValidCluster Validate(ClustersPost? body)
    {
        if (body is null)
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object");
        var errors = new Dictionary<string, string[]>();
        var d = defaults.Value;
        if (Names.Validate(body.Name, "cluster name") is { } nameError) errors["name"] = [nameError];
        else if (body.Name!.Length > ClusterNames.MaxLength)
            errors["name"] = [$"cluster name is {body.Name.Length} characters long; the limit is {ClusterNames.MaxLength} (member names add a suffix)"];
        if (body.Nodes is not { } nodes) errors["nodes"] = ["nodes is required: how many compute nodes (1 to " + Options.MaxNodes + ")"];
        else if (nodes < 1 || nodes > Options.MaxNodes)
            errors["nodes"] = [$"nodes must be between 1 and {Options.MaxNodes}, got {nodes}"];
        var frontendImage = body.FrontendImage ?? d.Image;
        if (Names.Validate(frontendImage, "image") is { } fi) errors["frontendImage"] = [fi];
        var nodeImage = body.NodeImage ?? d.Image;
        if (Names.Validate(nodeImage, "image") is { } ni) errors["nodeImage"] = [ni];
        var frontendCpus = Cpus(body.FrontendCpus, "frontendCpus");
        var nodeCpus = Cpus(body.NodeCpus, "nodeCpus");
        var frontendMemory = Memory(body.FrontendMemory, "frontendMemory");
        var nodeMemory = Memory(body.NodeMemory, "nodeMemory");
        Cidr? subnet = null;
        if (body.Subnet is not null)
        {
            if (!Cidr.TryParse(body.Subnet, out var s, out var subnetError)) errors["subnet"] = [subnetError!];
            else if (body.Nodes is { } n && s.GuestCapacity < n + 1)
                errors["subnet"] = [$"{s} has room for {s.GuestCapacity} guests; the cluster needs {n + 1} (frontend and nodes)"];
            else subnet = s;
        }
        if (body.Network is not null && Names.Validate(body.Network, "network name") is { } netError) errors["network"] = [netError];
        var expose = body.ExposePort ?? 22;
        if (expose is < 0 or > 65535) errors["exposePort"] = [$"exposePort must be between 1 and 65535 (0 for none), got {expose}"];
        var (start, end) = Window(body.Start, body.End, errors);
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        return new ValidCluster(body.Name!, body.Nodes!.Value, frontendImage, frontendCpus, frontendMemory, nodeImage, nodeCpus, nodeMemory,
            subnet, body.Network, expose, start, end);

        int Cpus(int? value, string field)
        {
            var cpus = value ?? d.Cpus;
            if (cpus < 1 || cpus > InstanceRequestValidator.MaxCpus)
                errors[field] = [$"{field} must be between 1 and {InstanceRequestValidator.MaxCpus}, got {cpus}"];
            return cpus;
        }

        long Memory(string? value, string field)
        {
            if (value is null) return d.MemoryBytes;
            if (!ByteSize.TryParse(value, out var bytes, out var error)) errors[field] = [$"{field}: {error}"];
            else if (bytes < InstanceRequestValidator.MinMemory || bytes > InstanceRequestValidator.MaxMemory)
                errors[field] = [$"{field} must be between {ByteSize.Human(InstanceRequestValidator.MinMemory)} and {ByteSize.Human(InstanceRequestValidator.MaxMemory)}, got {value}"];
            return bytes;
        }
    }

    /// <summary>A reservation window from a request: none when neither end is given; errors keyed start/end.</summary>
    private (DateTimeOffset? Start, DateTimeOffset? End) Window(DateTimeOffset? requestedStart, DateTimeOffset? requestedEnd, Dictionary<string, string[]> errors)
    {
        if (requestedStart is null && requestedEnd is null) return (null, null);
        var now = time.GetUtcNow();
        if (requestedEnd is not { } end)
        {
            errors["end"] = ["a reservation needs an end time (--end)"];
            return (null, null);
        }
        var start = requestedStart ?? now;
        // A start a few seconds old is "now" (the request was on its way); older is an error.
        if (requestedStart is { } s && s < now && s > now - TimeSpan.FromMinutes(1)) start = now;
        if (ReservationCalendar.Validate(start, end, now) is { } windowError)
            errors[windowError.Contains("start", StringComparison.Ordinal) && !windowError.StartsWith("end", StringComparison.Ordinal) ? "start" : "end"] = [windowError];
        return (start, end);
    }

    /// <summary>
    /// Reserves a single VM for a window (POST /instances with start and end): the request is checked as a create
    /// would be, the window admitted on one node, and the VM created with this name when the window opens.
    /// </summary>
    public async Task<Operation> ReserveVmAsync(Caller caller, string project, InstancesPost body, CancellationToken ct)
    {
        if (body.Type is { } type && type != InstanceTypes.Vm)
            throw ProblemException.Validation("type", $"only VMs (and clusters) can be reserved for a window, not a {type}");
        var errors = new Dictionary<string, string[]>();
        var (start, end) = Window(body.Start, body.End, errors);
        if (body.Stopped == true) errors["stopped"] = ["a reserved VM is started when its window opens; leave --stopped out"];
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        var (req, image, passwordHash) = await instances.PrepareAsync(caller, project, body, ct);
        try
        {
            return await db.WriteAsync(ctx => ReserveVm(ctx, caller, project, req, image, passwordHash, start!.Value, end!.Value), ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"a reservation or cluster named '{req.Name}' already exists in project '{project}'");
        }
    }

    private Operation ReserveVm(WriteContext ctx, Caller caller, string project, ValidCreate req, ImageRow image, string? passwordHash,
        DateTimeOffset start, DateTimeOffset end)
    {
        var c = ctx.Connection;
        if (FindAny(c, ctx.Transaction, project, req.Name) is { } clash)
            throw ProblemException.Conflict($"a {(clash.IsVm ? "VM reservation" : "cluster")} named '{req.Name}' already exists in project '{project}'");
        if (InstanceExists(ctx, project, req.Name))
            throw ProblemException.Conflict($"an instance named '{req.Name}' already exists in project '{project}'");
        if (req.Network is { } network && NetworkService.Find(c, ctx.Transaction, project, network) is null)
            throw ProblemException.Validation("network", $"network '{network}' does not exist in project '{project}' (see: kumo network list)");
        var now = time.GetUtcNow();
        var row = new ClusterRow
        {
            Id = Ulid.NewUlid().ToString().ToLowerInvariant(),
            Name = req.Name,
            Project = project,
            Kind = ReservationKinds.Vm,
            VmSpec = System.Text.Json.JsonSerializer.Serialize(req with { Password = null }, SpecJson),
            VmPasswordHash = passwordHash,
            OwnerId = caller.UserId,
            Nodes = 0,
            FrontendImage = image.Name,
            FrontendCpus = req.Cpus,
            FrontendMemoryBytes = req.MemoryBytes,
            NodeImage = image.Name,
            PrivateNetwork = "",
            PrivateSubnet = "",
            ExternalNetwork = req.Network ?? "",
            StartAt = Json.At(start),
            EndAt = Json.At(end),
            CreatedAt = Json.At(now),
            UpdatedAt = Json.At(now),
        };
        // Validation ran a moment ago; a start that was "now" then is now again (the window cannot open in the past).
        if (start < now) start = now;
        Admit(ctx, row, start, end, now, req.Node);
        if (start > now)
        {
            row.State = ClusterStates.Scheduled;
            row.Message = $"reserved from {Json.At(start)} to {Json.At(end)}";
            row.AddEvent(now, "reserved", row.Message);
            Insert(ctx, row);
            return operations.Insert(ctx, "reserve", req.Name, null, null, 0, $"VM '{req.Name}' {row.Message}", supersede: false, project: project, userId: caller.UserId);
        }
        row.State = ClusterStates.Creating;
        row.Message = "creating the VM";
        Insert(ctx, row);
        return Materialize(ctx, row, caller);
    }

    private static readonly System.Text.Json.JsonSerializerOptions SpecJson = new(System.Text.Json.JsonSerializerDefaults.Web);

    /// <summary>
    /// Creates a cluster now (members placed and booting; the operation ends when all are running or the cluster was
    /// rolled back) or reserves it for a window (the operation ends at once; the reconciler creates it at the start).
    /// </summary>
    public async Task<Operation> CreateAsync(Caller caller, string project, ClustersPost? body, CancellationToken ct)
    {
        var req = Validate(body);
        try
        {
            return await db.WriteAsync(ctx => Create(ctx, caller, project, req), ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"a cluster, instance or network named after '{req.Name}' already exists in project '{project}'");
        }
    }

    private Operation Create(WriteContext ctx, Caller caller, string project, ValidCluster req)
    {
        var c = ctx.Connection;
        if (FindAny(c, ctx.Transaction, project, req.Name) is { } clash)
            throw ProblemException.Conflict($"a {(clash.IsVm ? "VM reservation" : "cluster")} named '{req.Name}' already exists in project '{project}'");
        foreach (var (image, field) in new[] { (req.FrontendImage, "frontendImage"), (req.NodeImage, "nodeImage") })
        {
            if (InstanceService.FindImage(c, ctx.Transaction, project, InstanceTypes.Vm, image) is null)
                throw ProblemException.Validation(field, $"image '{image}' does not exist (see: kumo image list)");
        }
        if (req.Network is { } external && NetworkService.Find(c, ctx.Transaction, project, external) is null)
            throw ProblemException.Validation("network", $"network '{external}' does not exist in project '{project}' (see: kumo network list)");

        var now = time.GetUtcNow();
        var row = new ClusterRow
        {
            Id = Ulid.NewUlid().ToString().ToLowerInvariant(),
            Name = req.Name,
            Project = project,
            OwnerId = caller.UserId,
            Nodes = req.Nodes,
            FrontendImage = req.FrontendImage,
            FrontendCpus = req.FrontendCpus,
            FrontendMemoryBytes = req.FrontendMemory,
            NodeImage = req.NodeImage,
            NodeCpus = req.NodeCpus,
            NodeMemoryBytes = req.NodeMemory,
            PrivateNetwork = ClusterNames.PrivateNetwork(req.Name),
            ExternalNetwork = req.Network ?? ClusterNames.ExternalNetwork(req.Name),
            OwnsExternal = req.Network is null ? 1 : 0,
            ExposePort = req.ExposePort == 0 ? null : req.ExposePort,
            StartAt = req.Start is { } s ? Json.At(s) : null,
            EndAt = req.End is { } e ? Json.At(e) : null,
            CreatedAt = Json.At(now),
            UpdatedAt = Json.At(now),
        };

        // The networks exist from the start, also for a reservation: their names and subnets are then settled.
        var taken = NetworkService.AllSubnets(ctx);
        var privateSubnet = req.Subnet ?? FreeSubnet(taken);
        taken.Add(privateSubnet);
        row.PrivateSubnet = privateSubnet.ToString();
        networks.Create(ctx, caller, project, row.PrivateNetwork, privateSubnet, nat: false, domain: null);
        if (req.Network is null)
        {
            var externalSubnet = FreeSubnet(taken);
            row.ExternalSubnet = externalSubnet.ToString();
            networks.Create(ctx, caller, project, row.ExternalNetwork, externalSubnet, nat: true, domain: null);
        }

        var startsLater = req.Start is { } start && start > now;
        // Validation ran a moment ago; a start that was "now" then is now again (the window cannot open in the past).
        if (req.End is not null) Admit(ctx, row, startsLater ? req.Start!.Value : now, req.End.Value, now);
        Operation op;
        if (startsLater)
        {
            row.State = ClusterStates.Scheduled;
            row.Message = $"reserved from {Json.At(req.Start!.Value)} to {Json.At(req.End!.Value)}";
            row.AddEvent(now, "reserved", row.Message);
            op = operations.Insert(ctx, "cluster-create", req.Name, null, null, 0, $"cluster '{req.Name}' {row.Message}", supersede: false, project: project, userId: caller.UserId);
            Insert(ctx, row);
            return op;
        }
        row.State = ClusterStates.Creating;
        row.Message = $"creating {req.Nodes + 1} members";
        Insert(ctx, row);
        op = Materialize(ctx, row, caller);
        return op;
    }

    /// <summary>
    /// Creates every member (frontend first, nodes next to it) and the frontend's port forward, inside the write.
    /// Throws (and so undoes everything) when quota or capacity refuse any member.
    /// </summary>
    private Operation Materialize(WriteContext ctx, ClusterRow row, Caller owner)
    {
        // A reservation's capacity was admitted on one node: the whole cluster goes there.
        var reserved = row.NodeId is null ? null
            : ctx.Connection.ExecuteScalar<string>("SELECT name FROM nodes WHERE id = @NodeId", row, ctx.Transaction);
        if (row.IsVm) return MaterializeVm(ctx, row, owner, reserved);
        var frontend = CreateMember(ctx, row, owner, row.FrontendName, row.FrontendImage, (int)row.FrontendCpus, row.FrontendMemoryBytes,
            [row.ExternalNetwork, row.PrivateNetwork], pin: reserved, 0);
        var (pin, excluded) = NodePlacement(ctx, frontend.NodeName, reserved);
        for (var i = 1; i <= row.Nodes; i++)
            CreateMember(ctx, row, owner, ClusterNames.Node(row.Name, i), row.NodeImage, (int)row.NodeCpus, row.NodeMemoryBytes,
                [row.PrivateNetwork], pin, i, excluded);
        if (row.ExposePort is { } port)
        {
            var externalId = NetworkService.Find(ctx.Connection, ctx.Transaction, row.Project, row.ExternalNetwork)!.Id;
            var nodeId = ctx.Connection.ExecuteScalar<string>("SELECT node_id FROM instances WHERE id = @id", new { id = frontend.InstanceId }, ctx.Transaction);
            row.PublicPort = forwards.Add(ctx, frontend.InstanceId, row.FrontendName, nodeId, externalId, (int)port, null, PortProtocols.Tcp).PublicPort;
        }
        var op = operations.Insert(ctx, "cluster-create", row.Name, row.Id, Expect.Ready, 0, row.Message ?? "creating",
            supersede: false, project: row.Project, userId: owner.UserId);
        row.OperationId = op.Id;
        Save(ctx, row);
        return op;
    }

    /// <summary>Creates a reserved VM from its stored request, on the node its window was admitted on.</summary>
    private Operation MaterializeVm(WriteContext ctx, ClusterRow row, Caller owner, string? reserved)
    {
        var req = System.Text.Json.JsonSerializer.Deserialize<ValidCreate>(row.VmSpec!, SpecJson)!;
        req = req with
        {
            Node = reserved ?? req.Node,
            Labels = new Dictionary<string, string>(req.Labels, StringComparer.Ordinal) { ["kumo.reservation"] = row.Name },
        };
        var imageRow = InstanceService.FindImage(ctx.Connection, ctx.Transaction, row.Project, InstanceTypes.Vm, req.Image)
            ?? throw ProblemException.Validation("image", $"image '{req.Image}' no longer exists");
        if (InstanceExists(ctx, row.Project, row.Name))
            throw ProblemException.Conflict($"an instance named '{row.Name}' was created in the meantime");
        if (req.Network is { } network && NetworkService.Find(ctx.Connection, ctx.Transaction, row.Project, network) is null)
            throw ProblemException.Validation("network", $"network '{network}' was deleted");
        instances.Create(ctx, owner, row.Project, req, imageRow, row.VmPasswordHash, null, row.Id);
        var op = operations.Insert(ctx, "cluster-create", row.Name, row.Id, Expect.Ready, 0, row.Message ?? "creating",
            supersede: false, project: row.Project, userId: owner.UserId);
        row.OperationId = op.Id;
        Save(ctx, row);
        return op;
    }

    /// <summary>
    /// Where compute nodes may go. The private network reaches other nodes only over VXLAN, so nodes spread (the
    /// scheduler's weigher decides) over the nodes with VXLAN on when the frontend's node has it too; otherwise, and
    /// for a reservation (admitted on one node), they stay on the frontend's node.
    /// </summary>
    private static (string? Pin, Dictionary<string, string>? Excluded) NodePlacement(WriteContext ctx, string frontendNode, string? reserved)
    {
        var nodes = ctx.Connection.Query<(string Id, string Name, string? VxlanAddress)>("SELECT id, name, vxlan_address FROM nodes", transaction: ctx.Transaction).ToList();
        if (reserved is not null || nodes.FirstOrDefault(n => n.Name == frontendNode).VxlanAddress is null) return (frontendNode, null);
        return (null, nodes.Where(n => n.VxlanAddress is null)
            .ToDictionary(n => n.Id, _ => "VXLAN is off on this node (kumo-agent --vxlan-address), so it cannot join the cluster's private network", StringComparer.Ordinal));
    }

    private InstanceService.Created CreateMember(WriteContext ctx, ClusterRow row, Caller owner, string name, string image, int cpus, long memory,
        IReadOnlyList<string> nics, string? pin, int index, IReadOnlyDictionary<string, string>? excluded = null)
    {
        var req = new ValidCreate(name, InstanceTypes.Vm, image, cpus, memory, defaults.Value.DiskBytes, pin, Stopped: false,
            new Dictionary<string, string> { ["kumo.cluster"] = row.Name, ["kumo.cluster.role"] = index == 0 ? "frontend" : "node" },
            $"member of cluster {row.Name}", null, [], null);
        var imageRow = InstanceService.FindImage(ctx.Connection, ctx.Transaction, row.Project, InstanceTypes.Vm, image)
            ?? throw ProblemException.Validation(index == 0 ? "frontendImage" : "nodeImage", $"image '{image}' does not exist (see: kumo image list)");
        if (imageRow.VirtualSizeBytes is { } least && req.DiskBytes < least) req = req with { DiskBytes = least };
        // A scheduled cluster's member names are not held: someone may have taken one before the window opened.
        if (InstanceExists(ctx, row.Project, name))
            throw ProblemException.Conflict($"an instance named '{name}' already exists in project '{row.Project}'; the cluster needs that name for a member");
        try
        {
            return instances.Create(ctx, owner, row.Project, req, imageRow, null, nics, row.Id, excluded);
        }
        catch (ProblemException e) when (e.Type is ProblemTypes.QuotaExceeded or ProblemTypes.NoCapacity)
        {
            var what = $"cluster '{row.Name}' needs {row.Nodes + 1} VMs (1 frontend + {row.Nodes} nodes), {row.TotalCpus} vCPU and {ByteSize.Human(row.TotalMemoryBytes)} memory";
            var fix = e.Type == ProblemTypes.QuotaExceeded
                ? "; ask an administrator to raise your quota or to give the project a quota (kumo quota set)"
                : pin is null ? "" : $"; the members go on one node ({pin}: a reservation's node, or the frontend's when VXLAN is off)";
            throw new ProblemException(e.Status, e.Type, e.Title, $"{what}; member '{name}' was refused: {e.Detail}{fix}") { Rejections = e.Rejections };
        }
    }

    /// <summary>
    /// Admits the cluster's window against every other reservation on the calendar, on one node (the members
    /// share a node). Runs inside the write that stores it, so two overlapping requests cannot both get in.
    /// </summary>
    private void Admit(WriteContext ctx, ClusterRow row, DateTimeOffset start, DateTimeOffset end, DateTimeOffset now, string? onlyNode = null)
    {
        var nodes = ctx.Connection.Query<NodeRow>("SELECT * FROM nodes", transaction: ctx.Transaction)
            .Where(n => n.State != NodeStates.Down && (onlyNode is null || n.Name == onlyNode))
            .Select(n => NodeCapacity.FromPhysical(n.Name, (int)n.Cpus, n.MemoryBytes, ratios.Value)).ToList();
        var existing = ctx.Connection.Query<ClusterRow>(
                Select + " WHERE c.end_at IS NOT NULL AND c.state NOT IN ('ended', 'failed') AND c.id != @Id", row, ctx.Transaction)
            .Select(r => new ReservationWindow(r.Name, r.NodeName, Json.Time(r.StartAt!), Json.Time(r.EndAt!), r.TotalCpus, r.TotalMemoryBytes))
            .ToList();
        var admission = ReservationCalendar.Admit(nodes, existing,
            new ReservationWindow(row.Name, null, start, end, row.TotalCpus, row.TotalMemoryBytes), now);
        if (!admission.Admitted)
            throw new ProblemException(409, ProblemTypes.ReservationConflict, "The reservation does not fit the calendar",
                $"{(row.IsVm ? "VM" : "cluster")} '{row.Name}' ({row.TotalCpus} vCPU, {ByteSize.Human(row.TotalMemoryBytes)}): {admission.Error}");
        row.NodeId = ctx.Connection.ExecuteScalar<string>("SELECT id FROM nodes WHERE name = @Node", admission, ctx.Transaction);
    }

    /// <summary>The first /24 of the pool that overlaps no network of any project (a node can hold only one of overlapping subnets).</summary>
    private Cidr FreeSubnet(List<Cidr> taken)
    {
        // Cidr itself only takes tenant-sized prefixes (/16 to /29); the pool is wider, so it is read by hand.
        var slash = Options.SubnetPool.IndexOf('/', StringComparison.Ordinal);
        var first = Cidr.ParseAddress(Options.SubnetPool[..slash]);
        var size = 1L << (32 - int.Parse(Options.SubnetPool[(slash + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        for (long offset = 0; offset + 256 <= size; offset += 256)
        {
            var net = (uint)(first + offset);
            var candidate = new Cidr(net, 24);
            if (!taken.Any(t => t.Overlaps(candidate))) return candidate;
        }
        throw new ProblemException(409, ProblemTypes.AddressesExhausted, "No free subnet for the cluster",
            $"every /24 of {Options.SubnetPool} overlaps an existing network; pass --subnet");
    }

    public async Task<Operation> ScaleAsync(Caller caller, string project, string name, ClusterScale? body, CancellationToken ct)
    {
        if (body?.Nodes is not { } nodes)
            throw ProblemException.Validation("nodes", $"nodes is required: how many compute nodes (1 to {Options.MaxNodes})");
        if (nodes < 1 || nodes > Options.MaxNodes)
            throw ProblemException.Validation("nodes", $"nodes must be between 1 and {Options.MaxNodes}, got {nodes}");
        try
        {
            return await db.WriteAsync(ctx => Scale(ctx, caller, project, name, nodes), ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"an instance named like a new member of '{name}' already exists in project '{project}'");
        }
    }

    private Operation Scale(WriteContext ctx, Caller caller, string project, string name, int nodes)
    {
        var row = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("cluster", name);
        if (row.State is not (ClusterStates.Ready or ClusterStates.Degraded or ClusterStates.Scheduled))
            throw ProblemException.InvalidState($"cluster '{name}' is {row.State}; it can be scaled when ready, degraded or scheduled");
        var before = (int)row.Nodes;
        if (nodes == before)
            return operations.Insert(ctx, "cluster-scale", name, null, null, 0, $"cluster '{name}' already has {nodes} nodes", supersede: false, project: project, userId: caller.UserId);
        var now = time.GetUtcNow();
        row.Nodes = nodes;
        if (row.IsReservation && nodes > before)
        {
            // The larger cluster must fit the rest of its window too.
            var start = row.State == ClusterStates.Scheduled ? Json.Time(row.StartAt!) : now;
            Admit(ctx, row, start, Json.Time(row.EndAt!), now);
        }
        row.AddEvent(now, "scaled", $"scaled from {before} to {nodes} nodes");
        if (row.State == ClusterStates.Scheduled)
        {
            Save(ctx, row);
            return operations.Insert(ctx, "cluster-scale", name, null, null, 0, $"reservation '{name}' now holds {nodes} nodes", supersede: false, project: project, userId: caller.UserId);
        }
        var members = MemberRows(ctx.Connection, ctx.Transaction, row.Id);
        if (nodes > before)
        {
            var owner = OwnerOf(ctx, row) ?? caller;
            var frontendNode = members.FirstOrDefault(m => m.Name == row.FrontendName)?.NodeName
                ?? throw ProblemException.InvalidState($"cluster '{name}' has no frontend; delete and create it again");
            var reserved = row.NodeId is null ? null : frontendNode;
            var (pin, excluded) = NodePlacement(ctx, frontendNode, reserved);
            var next = members.Select(m => ClusterNames.NodeIndex(name, m.Name) ?? 0).DefaultIfEmpty(0).Max() + 1;
            for (var i = 0; i < nodes - before; i++, next++)
                CreateMember(ctx, row, owner, ClusterNames.Node(name, next), row.NodeImage, (int)row.NodeCpus, row.NodeMemoryBytes, [row.PrivateNetwork], pin, next, excluded);
        }
        else
        {
            // The highest-numbered nodes go first, so the remaining names stay n1..nN.
            foreach (var m in members.Where(m => ClusterNames.NodeIndex(name, m.Name) is not null && m.DesiredPower != PowerStates.Deleted)
                         .OrderByDescending(m => ClusterNames.NodeIndex(name, m.Name)).Take(before - nodes))
                instances.Delete(ctx, caller, project, m.Name, force: true);
        }
        row.State = ClusterStates.Scaling;
        row.Message = $"scaling from {before} to {nodes} nodes";
        var op = operations.Insert(ctx, "cluster-scale", name, row.Id, Expect.Ready, 0, row.Message, supersede: false, project: project, userId: caller.UserId);
        Save(ctx, row);
        return op;
    }

    /// <summary>Deletes a cluster (DELETE /clusters/{name}) or, with <paramref name="reservation"/>, any reservation, a VM's too.</summary>
    public Task<Operation> DeleteAsync(Caller caller, string project, string name, CancellationToken ct, bool reservation = false) =>
        db.WriteAsync(ctx =>
        {
            var row = (reservation ? FindAny(ctx.Connection, ctx.Transaction, project, name) is { EndAt: not null } r ? r : null
                    : Find(ctx.Connection, ctx.Transaction, project, name))
                ?? throw ProblemException.NotFound(reservation ? "reservation" : "cluster", name);
            return DeleteRow(ctx, caller, project, row);
        }, ct);

    private Operation DeleteRow(WriteContext ctx, Caller caller, string project, ClusterRow row)
    {
        var name = row.Name;
        if (row.State == ClusterStates.Deleting)
            return operations.Insert(ctx, "cluster-delete", name, null, null, 0, $"cluster '{name}' is already being deleted", supersede: false, project: project, userId: caller.UserId);
        // A rollback or an ending in progress becomes a delete: the same teardown, but the row goes too.
        operations.Complete(ctx, row.Id, Expect.Ready, long.MaxValue, $"cluster '{name}' was deleted", "deleted");
        row.State = ClusterStates.Deleting;
        row.Message = "deleting members and networks";
        var op = operations.Insert(ctx, "cluster-delete", name, row.Id, Expect.Deleted, 0, row.Message, supersede: false, project: project, userId: caller.UserId);
        Save(ctx, row);
        Teardown(ctx, row, caller);
        return op;
    }

    /// <summary>
    /// Deletes every cluster and reservation a user owns (their account is being deleted) and waits until the
    /// reconciler has torn them down, members and networks included.
    /// </summary>
    internal async Task DeleteAllOwnedAsync(Caller caller, string ownerId, CancellationToken ct)
    {
        Task<List<(string Project, string Name)>> OwnedAsync() => db.ReadAsync(c => c.Query<(string Project, string Name)>(
            "SELECT project, name FROM clusters WHERE owner_id = @ownerId", new { ownerId }).ToList(), ct);
        foreach (var (project, name) in await OwnedAsync())
        {
            try
            {
                await db.WriteAsync(ctx => DeleteRow(ctx, caller, project, FindAny(ctx.Connection, ctx.Transaction, project, name)
                    ?? throw ProblemException.NotFound("cluster", name)), ct);
            }
            catch (ProblemException e) when (e.Status == 404)
            {
                // Gone since we listed it.
            }
        }
        var deadline = time.GetUtcNow() + TimeSpan.FromMinutes(2);
        while ((await OwnedAsync()).Count > 0)
        {
            if (time.GetUtcNow() > deadline) throw ProblemException.InvalidState("the user's clusters are still being torn down; try again shortly");
            await Task.Delay(200, ct);
        }
    }

    /// <summary>One pass over every cluster (the reconciler's tick). Each cluster is its own write.</summary>
    internal async Task ReconcileAllAsync(CancellationToken ct)
    {
        var ids = await db.ReadAsync(c => c.Query<string>("SELECT id FROM clusters WHERE state NOT IN ('ended', 'failed')").ToList(), ct);
        foreach (var id in ids)
        {
            try
            {
                await db.WriteAsync(ctx => Reconcile(ctx, id), ct);
            }
            catch (StartFailedException e)
            {
                await db.WriteAsync(ctx => FailStart(ctx, id, e.Message), ct);
            }
        }
    }

    private void Reconcile(WriteContext ctx, string id)
    {
        var row = ctx.Connection.QuerySingleOrDefault<ClusterRow>(Select + " WHERE c.id = @id", new { id }, ctx.Transaction);
        if (row is null) return;
        var now = time.GetUtcNow();
        var ended = row.EndAt is { } endAt && now >= Json.Time(endAt);
        var before = (row.State, row.Message, row.Events);
        switch (row.State)
        {
            case ClusterStates.Scheduled when ended:
                row.State = ClusterStates.Ended;
                row.Message = "the reservation window passed before the cluster could start (was kumod down?)";
                row.AddEvent(now, "ended", row.Message);
                Teardown(ctx, row, null);
                break;
            case ClusterStates.Scheduled when now >= Json.Time(row.StartAt!):
                Start(ctx, row, now);
                break;
            case ClusterStates.Creating or ClusterStates.Scaling or ClusterStates.Ready or ClusterStates.Degraded when ended:
                row.State = ClusterStates.Ending;
                row.Message = "the reservation window closed; stopping and releasing the members";
                row.AddEvent(now, "ending", row.Message);
                operations.Complete(ctx, row.Id, Expect.Ready, long.MaxValue, "the reservation window closed", "ended");
                Teardown(ctx, row, null);
                break;
            case ClusterStates.Creating or ClusterStates.Scaling or ClusterStates.Ready or ClusterStates.Degraded:
                Watch(ctx, row, now);
                break;
            case ClusterStates.RollingBack or ClusterStates.Deleting or ClusterStates.Ending:
                Teardown(ctx, row, null);
                break;
        }
        if (row.State is ClusterStates.Creating or ClusterStates.Scaling or ClusterStates.Ready or ClusterStates.Degraded && row.EndAt is { } end)
            WarnBeforeEnd(ctx, row, now, Json.Time(row.StartAt!), Json.Time(end));
        if (row.State == "gone") return;
        if (before != (row.State, row.Message, row.Events)) Save(ctx, row);
    }

    private void Start(WriteContext ctx, ClusterRow row, DateTimeOffset now)
    {
        var owner = OwnerOf(ctx, row) ?? throw new StartFailedException("its owner no longer exists");
        row.State = ClusterStates.Creating;
        row.Message = row.IsVm ? "the reservation window opened; creating the VM" : $"the reservation window opened; creating {row.Nodes + 1} members";
        row.AddEvent(now, "started", row.Message);
        try
        {
            Materialize(ctx, row, owner);
        }
        catch (ProblemException e)
        {
            // Undoes this write (members placed so far included); the reconciler then records the failure in a write of its own.
            throw new StartFailedException(e.Detail ?? e.Title);
        }
    }

    /// <summary>A reserved cluster could not be created when its window opened.</summary>
    private sealed class StartFailedException(string why) : Exception(why);

    private void FailStart(WriteContext ctx, string id, string why)
    {
        var row = ctx.Connection.QuerySingleOrDefault<ClusterRow>(Select + " WHERE c.id = @id", new { id }, ctx.Transaction);
        if (row is not { State: ClusterStates.Scheduled }) return;
        Fail(ctx, row, time.GetUtcNow(), why);
        Save(ctx, row);
    }

    private void Fail(WriteContext ctx, ClusterRow row, DateTimeOffset now, string why)
    {
        row.State = ClusterStates.Failed;
        row.Message = $"could not start at the reservation's start: {why}";
        row.AddEvent(now, "failed", row.Message);
        Teardown(ctx, row, null);
    }

    /// <summary>Aggregates member states; a member failing during creation rolls the whole cluster back.</summary>
    private void Watch(WriteContext ctx, ClusterRow row, DateTimeOffset now)
    {
        var all = MemberRows(ctx.Connection, ctx.Transaction, row.Id);
        var members = all.Where(m => m.DesiredPower != PowerStates.Deleted).ToList();
        var deleting = all.Count - members.Count;
        var failed = members.FirstOrDefault(m => m.State is InstanceStates.Error or InstanceStates.Lost
            || (m.State == InstanceStates.Stopped && m.DesiredPower == PowerStates.Stopped));
        var running = members.Count(m => m.State == InstanceStates.Running);
        var expected = (int)row.Nodes + 1;
        if (row.IsVm && all.Count == 0 && row.State != ClusterStates.Creating)
        {
            // Deleted with --force by its owner: the rest of the window is released, the reservation kept as history.
            row.State = ClusterStates.Ending;
            row.Message = "the reserved VM was deleted before the window closed; its capacity is released";
            row.AddEvent(now, "ending", row.Message);
            Teardown(ctx, row, null);
            return;
        }
        if (row.State == ClusterStates.Creating && failed is not null)
        {
            var why = $"{(row.IsVm ? "VM" : "member")} '{failed.Name}' failed while the {(row.IsVm ? "VM" : "cluster")} was being created ({failed.State}: {failed.StatusMessage ?? "no detail"}); rolled back";
            row.State = ClusterStates.RollingBack;
            row.Message = why;
            row.AddEvent(now, "rollback", why);
            Teardown(ctx, row, null);
            return;
        }
        if (running == expected && members.Count == expected && deleting == 0)
        {
            var allRunning = row.IsVm ? "the VM is running" : $"all {expected} members running";
            if (row.State != ClusterStates.Ready) row.AddEvent(now, "ready", allRunning);
            row.State = ClusterStates.Ready;
            row.Message = allRunning;
            operations.Complete(ctx, row.Id, Expect.Ready, long.MaxValue, null, row.Message);
            return;
        }
        var progress = $"{running} of {expected} members running" + (deleting > 0 ? $", {deleting} being removed" : "");
        if (row.State == ClusterStates.Ready)
        {
            row.State = ClusterStates.Degraded;
            row.AddEvent(now, "degraded", failed is null ? progress : $"member '{failed.Name}' is {failed.State}");
        }
        row.Message = failed is null ? progress : $"{progress}; member '{failed.Name}' is {failed.State}";
        operations.ProgressOn(ctx, row.Id, Expect.Ready, row.Message);
    }

    private void WarnBeforeEnd(WriteContext ctx, ClusterRow row, DateTimeOffset now, DateTimeOffset start, DateTimeOffset end)
    {
        if (row.Warned != 0) return;
        var lead = TimeSpan.FromTicks(Math.Min(Options.WarnBefore.Ticks, (end - start).Ticks / 5));
        if (now < end - lead) return;
        row.Warned = 1;
        var left = end - now;
        // The event changes the row's events, so Reconcile saves it (with the warned flag) once.
        row.AddEvent(now, "ending-soon", $"the reservation ends at {Json.At(end)} (in {Left(left)}); its members will be stopped and released, save your work");
    }

    private static string Left(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s" : $"{Math.Max(0, (int)t.TotalSeconds)}s";

    /// <summary>
    /// Removes what the cluster made: members first (forced delete; their agents confirm), then, once no member
    /// is left, the networks it made, and finally the row (deleted or rolled back) or its history (ended).
    /// </summary>
    private void Teardown(WriteContext ctx, ClusterRow row, Caller? caller)
    {
        caller ??= new Caller(row.OwnerId, row.OwnerName, Roles.Admin, "kumod");
        var members = MemberRows(ctx.Connection, ctx.Transaction, row.Id);
        foreach (var m in members.Where(m => m.DesiredPower != PowerStates.Deleted))
            instances.Delete(ctx, caller, row.Project, m.Name, force: true);
        if (MemberRows(ctx.Connection, ctx.Transaction, row.Id).Count > 0) return;

        DropNetwork(ctx, row.Project, row.PrivateNetwork);
        if (row.OwnsExternal != 0) DropNetwork(ctx, row.Project, row.ExternalNetwork);
        var now = time.GetUtcNow();
        switch (row.State)
        {
            case ClusterStates.RollingBack:
                operations.Complete(ctx, row.Id, Expect.Ready, long.MaxValue, row.Message, "rolled back");
                Remove(ctx, row);
                break;
            case ClusterStates.Deleting:
                operations.Complete(ctx, row.Id, Expect.Deleted, long.MaxValue, null, "deleted");
                Remove(ctx, row);
                break;
            case ClusterStates.Ending:
                row.State = ClusterStates.Ended;
                row.Message = "the reservation window closed; everything was released";
                row.AddEvent(now, "ended", row.Message);
                row.PublicPort = null;
                Save(ctx, row);
                break;
        }
    }

    private static void DropNetwork(WriteContext ctx, string project, string name)
    {
        if (NetworkService.Find(ctx.Connection, ctx.Transaction, project, name) is not null) NetworkService.Delete(ctx, project, name);
    }

    private static void Remove(WriteContext ctx, ClusterRow row)
    {
        ctx.Connection.Execute("DELETE FROM clusters WHERE id = @Id", row, ctx.Transaction);
        row.State = "gone";
    }

    private Caller? OwnerOf(WriteContext ctx, ClusterRow row) =>
        ctx.Connection.QuerySingleOrDefault<(string Id, string Name, string Role)?>(
            "SELECT id, name, role FROM users WHERE id = @OwnerId", row, ctx.Transaction) is { } u
            ? new Caller(u.Id, u.Name, u.Role, "kumod")
            : null;

    private void Insert(WriteContext ctx, ClusterRow row) =>
        ctx.Connection.Execute(
            """
            INSERT INTO clusters (id, name, project, kind, vm_spec, vm_password_hash, owner_id, state, message, nodes, frontend_image, frontend_cpus, frontend_memory_bytes,
                node_image, node_cpus, node_memory_bytes, private_network, private_subnet, external_network, external_subnet, owns_external,
                expose_port, public_port, node_id, start_at, end_at, warned, operation_id, events, created_at, updated_at)
            VALUES (@Id, @Name, @Project, @Kind, @VmSpec, @VmPasswordHash, @OwnerId, @State, @Message, @Nodes, @FrontendImage, @FrontendCpus, @FrontendMemoryBytes,
                @NodeImage, @NodeCpus, @NodeMemoryBytes, @PrivateNetwork, @PrivateSubnet, @ExternalNetwork, @ExternalSubnet, @OwnsExternal,
                @ExposePort, @PublicPort, @NodeId, @StartAt, @EndAt, @Warned, @OperationId, @Events, @CreatedAt, @UpdatedAt)
            """, row, ctx.Transaction);

    private void Save(WriteContext ctx, ClusterRow row)
    {
        row.UpdatedAt = Json.Now(time);
        ctx.Connection.Execute(
            """
            UPDATE clusters SET state = @State, message = @Message, nodes = @Nodes, public_port = @PublicPort, node_id = @NodeId,
                warned = @Warned, operation_id = @OperationId, events = @Events, updated_at = @UpdatedAt WHERE id = @Id
            """, row, ctx.Transaction);
    }

    /// <summary>Whether an instance holds <paramref name="name"/> in the project (reservations do not hold their VMs' names).</summary>
    private static bool InstanceExists(WriteContext ctx, string project, string name) =>
        ctx.Connection.ExecuteScalar<long>("SELECT count(*) FROM instances WHERE project = @project AND name = @name", new { project, name }, ctx.Transaction) > 0;

    /// <summary>A cluster by name (not a VM reservation).</summary>
    private static ClusterRow? Find(SqliteConnection c, SqliteTransaction? tx, string project, string name) =>
        FindAny(c, tx, project, name) is { IsVm: false } row ? row : null;

    /// <summary>A cluster or VM reservation by name: they share one name space per project.</summary>
    private static ClusterRow? FindAny(SqliteConnection c, SqliteTransaction? tx, string project, string name) =>
        c.QuerySingleOrDefault<ClusterRow>(Select + " WHERE c.project = @project AND c.name = @name", new { project, name }, tx);

    private static List<InstanceRow> MemberRows(SqliteConnection c, SqliteTransaction? tx, string clusterId) =>
        c.Query<InstanceRow>(
            "SELECT i.*, n.name AS node_name FROM instances i LEFT JOIN nodes n ON n.id = i.node_id WHERE i.cluster_id = @clusterId ORDER BY i.name",
            new { clusterId }, tx).ToList();

    private List<ClusterMember> Members(SqliteConnection c, SqliteTransaction? tx, ClusterRow row)
    {
        var rows = MemberRows(c, tx, row.Id);
        var nics = NetworkService.NicsOf(c, tx, rows.Select(r => r.Id));
        return rows
            .OrderBy(r => ClusterNames.NodeIndex(row.Name, r.Name) ?? 0)
            .Select(r => new ClusterMember
            {
                Name = r.Name,
                Role = r.Name == row.FrontendName ? "frontend" : "node",
                State = r.State,
                Node = r.NodeName,
                PrivateAddress = nics[r.Id].FirstOrDefault(n => n.Network == row.PrivateNetwork)?.Address,
                ExternalAddress = nics[r.Id].FirstOrDefault(n => n.Network == row.ExternalNetwork)?.Address,
                Latest = metrics.LatestView(r.Id),
            }).ToList();
    }

    /// <summary>Expectations of cluster operations (their subject is the cluster id); the colon keeps instance reports off them.</summary>
    private static class Expect
    {
        public const string Ready = "cluster:ready";
        public const string Deleted = "cluster:deleted";
    }
}
