using Dapper;
using Grpc.Core;
using Kumo.Protocol;
using Kumo.Server.Images;
using Kumo.Server.Instances;
using Kumo.Server.Security;
using Kumo.Server.Storage;

namespace Kumo.Server.Agents;

/// <summary>
/// The gRPC face kumod shows to agents. Apart from GetCa and Join, every call is made with the node's client
/// certificate, and a node may only speak for itself: the node named in or addressed by a request must be the one
/// its certificate names.
/// </summary>
public sealed class AgentControlService(
    Database db, NodeService nodes, InstanceService instances, NodeSignals signals, ServerPki pki, NodeCertificates certificates, ImageService images,
    Snapshots.SnapshotService snapshots, Volumes.VolumeService volumes,
    Consoles.ConsoleBroker consoles, Monitoring.MetricsStore metrics, TimeProvider time, Debugging.DebugService debug,
    LiveMigration.MigrationService migrations, Microsoft.Extensions.Options.IOptions<Instances.InstanceDefaults> defaults)
    : AgentControl.AgentControlBase
{
    /// <summary>Resend the desired state at least this often, so an agent that missed nothing still re-checks.</summary>
    private static readonly TimeSpan ResendEvery = TimeSpan.FromSeconds(15);

    public override Task<CaReply> GetCa(CaRequest request, ServerCallContext context) =>
        Task.FromResult(new CaReply { CaPem = pki.Ca.ExportCertificatePem() });

    public override async Task<JoinReply> Join(JoinRequest request, ServerCallContext context)
    {
        using var certificate = await certificates.JoinAsync(request.Token, request.NodeName, request.CsrPem, context.CancellationToken);
        return new JoinReply { CertificatePem = certificate.ExportCertificatePem() };
    }

    public override async Task<RegisterReply> Register(RegisterRequest request, ServerCallContext context)
    {
        var caller = await certificates.AuthenticateAsync(context);
        if (caller != request.NodeName)
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"the certificate of node {caller} cannot register node {request.NodeName}"));
        if (request.VxlanAddress is { Length: > 0 } underlay && Core.Vxlan.ValidateUnderlay(underlay) is { } underlayError)
            throw new RpcException(new Status(StatusCode.InvalidArgument, underlayError));
        var id = await nodes.RegisterAsync(request.NodeName, request.Cpus, request.MemoryBytes, request.Accelerator,
            request.Labels, request.AgentVersion, context.CancellationToken, request.VxlanAddress);
        return new RegisterReply { NodeId = id, HeartbeatIntervalMs = (int)nodes.Health.HeartbeatInterval.TotalMilliseconds };
    }

    [Audit.Keepalive]
    public override async Task<HeartbeatReply> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        if (!await certificates.AuthorizeNodeAsync(context, request.NodeId))
            return new HeartbeatReply { Known = false };
        var (known, resync) = await nodes.HeartbeatAsync(request.NodeId, context.CancellationToken);
        return new HeartbeatReply { Known = known, Resync = resync };
    }

    public override async Task WatchDesired(WatchRequest request, IServerStreamWriter<DesiredState> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        long revision = 0;
        while (!ct.IsCancellationRequested)
        {
            // Checked on every send, so removing the node ends the stream of a connected agent too.
            await certificates.AuthorizeNodeAsync(context, request.NodeId);
            var state = await DesiredAsync(request.NodeId, ct);
            state.Revision = ++revision;
            await responseStream.WriteAsync(state, ct);
            try
            {
                await signals.WaitAsync(request.NodeId, ResendEvery, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
        }
    }

    public override async Task<StatusReply> ReportStatus(StatusReport request, ServerCallContext context)
    {
        if (!await certificates.AuthorizeNodeAsync(context, request.NodeId))
            return new StatusReply();
        nodes.Touch(request.NodeId);
        if (request.Instances.Count > 0 || request.Volumes.Count > 0)
        {
            await db.WriteAsync(ctx =>
            {
                foreach (var s in request.Instances)
                {
                    snapshots.ApplyReport(ctx, request.NodeId, s);
                    volumes.ApplyInstanceReport(ctx, request.NodeId, s);
                    instances.ApplyStatus(ctx, request.NodeId, s.Id, s.State, string.IsNullOrEmpty(s.Message) ? null : s.Message, s.BootGeneration, s.Gone);
                    debug.Observe(ctx, s.Id, s.DebugEndpoint, s.DebugError);
                    migrations.Apply(ctx, request.NodeId, s);
                }
                volumes.ApplyNodeReport(ctx, request.NodeId, request.Volumes);
            }, context.CancellationToken);
        }
        return new StatusReply();
    }

    /// <summary>Keeps the sample for the monitoring views and adds the guests' CPU time to measured usage (durably).</summary>
    [Audit.Keepalive]
    public override async Task<MetricsReply> ReportMetrics(MetricsReport request, ServerCallContext context)
    {
        if (!await certificates.AuthorizeNodeAsync(context, request.NodeId))
            return new MetricsReply();
        nodes.Touch(request.NodeId);
        metrics.Add(request.NodeId, request);
        if (request.Guests.Count > 0)
        {
            var now = time.GetUtcNow();
            await db.WriteAsync(ctx => Monitoring.MeasuredUsage.Record(ctx, request.NodeId, request.Guests, now), context.CancellationToken);
        }
        return new MetricsReply();
    }

    /// <summary>Streams a stored image to a node that runs an instance made from it; any other image is "not found".</summary>
    public override async Task ImageFetch(ImageFetchRequest request, IServerStreamWriter<ImageChunk> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await certificates.AuthorizeNodeAsync(context, request.NodeId))
            throw new RpcException(new Status(StatusCode.NotFound, "unknown node"));
        var file = await images.FileForNodeAsync(request.NodeId, request.ImageId, ct)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"image {request.ImageId} is not stored or not used on this node"));
        await using var f = new FileStream(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous | FileOptions.SequentialScan);
        var buffer = new byte[ChunkBytes];
        var first = new ImageChunk { TotalBytes = f.Length, Sha256 = file.Sha256 };
        int n;
        var sent = false;
        while ((n = await f.ReadAsync(buffer, ct)) > 0)
        {
            var chunk = sent ? new ImageChunk() : first;
            chunk.Data = Google.Protobuf.ByteString.CopyFrom(buffer, 0, n);
            await responseStream.WriteAsync(chunk, ct);
            sent = true;
        }
        if (!sent) await responseStream.WriteAsync(first, ct);
    }

    /// <summary>The NICs of the node's instances, and every network they use with all of its hosts.</summary>
    private static void AddNetworks(Microsoft.Data.Sqlite.SqliteConnection c, string nodeId, DesiredState state)
    {
        var nics = c.Query<(string InstanceId, string NetworkId, string Address, string Mac)>(
            "SELECT a.instance_id, a.network_id, a.address, a.mac FROM network_addresses a JOIN instances i ON i.id = a.instance_id WHERE i.node_id = @nodeId",
            new { nodeId }).ToLookup(n => n.InstanceId);
        foreach (var d in state.Instances)
        {
            foreach (var n in nics[d.Id])
                d.Nics.Add(new InstanceNic { NetworkId = n.NetworkId, Address = n.Address, Mac = n.Mac });
        }
        var networkIds = nics.SelectMany(g => g).Select(n => n.NetworkId).Distinct().ToList();
        if (networkIds.Count == 0) return;
        var vxlanOn = c.ExecuteScalar<string?>("SELECT vxlan_address FROM nodes WHERE id = @nodeId", new { nodeId }) is not null;
        var hosts = c.Query<(string NetworkId, string Address, string Mac, string Name, string? NodeId, string? Underlay)>(
            """
            SELECT a.network_id, a.address, a.mac, i.name, i.node_id, n.vxlan_address FROM network_addresses a JOIN instances i ON i.id = a.instance_id
            LEFT JOIN nodes n ON n.id = i.node_id WHERE a.network_id IN @networkIds ORDER BY i.name
            """, new { networkIds }).ToLookup(h => h.NetworkId);
        var forwards = Networking.PortForwardService.ForNode(c, nodeId);
        // VXLAN peers: the underlay addresses of the other nodes with a NIC on the network, when this node has VXLAN on.
        var peers = !vxlanOn
            ? Array.Empty<(string, string)>().ToLookup(p => p.Item1, p => p.Item2)
            : c.Query<(string NetworkId, string Address)>(
                """
                SELECT DISTINCT a.network_id, n.vxlan_address FROM network_addresses a JOIN instances i ON i.id = a.instance_id
                JOIN nodes n ON n.id = i.node_id
                WHERE a.network_id IN @networkIds AND i.node_id != @nodeId AND n.vxlan_address IS NOT NULL ORDER BY n.vxlan_address
                """, new { networkIds, nodeId }).ToLookup(p => p.NetworkId, p => p.Address);
        foreach (var n in c.Query<Networking.NetworkRow>("SELECT * FROM networks WHERE id IN @networkIds ORDER BY id", new { networkIds }))
        {
            var api = n.ToApi([]);
            var network = new DesiredNetwork
            {
                Id = n.Id,
                Name = n.Name,
                Project = n.Project,
                Subnet = n.Subnet,
                Gateway = api.Gateway,
                Nat = api.Nat,
                DnsDomain = n.DnsDomain ?? "",
                Vni = (uint)(n.Vni ?? 0),
            };
            network.VxlanPeers.AddRange(peers[n.Id]);
            foreach (var h in hosts[n.Id])
                network.Hosts.Add(new NetworkHost
                {
                    Address = h.Address,
                    Mac = h.Mac,
                    Name = h.Name,
                    VxlanPeer = vxlanOn && h.NodeId != nodeId && h.Underlay is { } underlay ? underlay : "",
                });
            foreach (var f in forwards[n.Id])
                network.Forwards.Add(new PortForwardRule { Protocol = f.Protocol, PublicPort = f.PublicPort, Address = f.Address, Port = f.Port });
            state.Networks.Add(network);
        }
    }

    /// <summary>Console sessions kumod asks this node for; the agent answers each with a ConsoleStream call.</summary>
    public override async Task ConsoleWatch(ConsoleWatchRequest request, IServerStreamWriter<ConsoleSessionRequest> responseStream, ServerCallContext context)
    {
        if (!await certificates.AuthorizeNodeAsync(context, request.NodeId))
            throw new RpcException(new Status(StatusCode.NotFound, "unknown node"));
        await consoles.WatchAsync(request.NodeId, responseStream, context.CancellationToken);
    }

    public override async Task ConsoleStream(IAsyncStreamReader<ConsoleFrame> requestStream, IServerStreamWriter<ConsoleFrame> responseStream,
        ServerCallContext context)
    {
        var ct = context.CancellationToken;
        // Refuse a caller without a node certificate before reading anything from it.
        await certificates.AuthenticateAsync(context);
        if (!await requestStream.MoveNext(ct)) return;
        var first = requestStream.Current;
        if (!await certificates.AuthorizeNodeAsync(context, first.NodeId))
            throw new RpcException(new Status(StatusCode.NotFound, "unknown node"));
        await consoles.ServeAsync(first, first.NodeId, requestStream, responseStream, ct);
    }

    /// <summary>Well under gRPC's default 4 MiB message limit.</summary>
    private const int ChunkBytes = 1 << 20;

    internal Task<DesiredState> DesiredAsync(string nodeId, CancellationToken ct) => db.ReadAsync(c =>
    {
        var rows = c.Query<(string Id, string Name, string Type, string Image, long Cpus, long MemoryBytes, long DiskBytes,
            string DesiredPower, string StopMode, long BootGeneration, string? Readiness, string? ImageId, string? ImageSha256,
            string? SshKeys, string? PasswordHash, long RestoreGeneration, string? RestoreSnapshot, long? DebugPort, string? Container, string Project, string? Owner,
            string? BuiltImageId)>(
            """
            SELECT i.id, i.name, i.type, i.image, i.cpus, i.memory_bytes, i.disk_bytes, i.desired_power, i.stop_mode, i.boot_generation,
                   COALESCE(s.readiness,
                       (SELECT readiness FROM images m WHERE m.name = i.image AND m.type = i.type AND m.project IN (i.project, 'system') LIMIT 1)),
                   s.id, s.sha256, i.ssh_keys, i.password_hash, i.restore_generation, i.restore_snapshot, d.port, i.container, i.project, u.name,
                   (SELECT b.id FROM images b WHERE b.id = i.image_id AND b.node_id IS NOT NULL)
            FROM instances i LEFT JOIN images s ON s.id = i.image_id AND s.sha256 IS NOT NULL
                LEFT JOIN debug_ports d ON d.instance_id = i.id
                LEFT JOIN users u ON u.id = i.owner_id
            WHERE i.node_id = @nodeId OR i.id IN (SELECT instance_id FROM migrations WHERE target_node_id = @nodeId) ORDER BY i.id
            """, new { nodeId });
        var state = new DesiredState();
        var byId = new Dictionary<string, DesiredInstance>(StringComparer.Ordinal);
        foreach (var r in rows)
        {
            var d = byId[r.Id] = new DesiredInstance
            {
                Id = r.Id,
                Name = r.Name,
                Type = r.Type,
                Image = r.Image,
                Cpus = (int)r.Cpus,
                MemoryBytes = r.MemoryBytes,
                DiskBytes = r.DiskBytes,
                Power = r.DesiredPower,
                StopMode = r.StopMode,
                BootGeneration = r.BootGeneration,
                Readiness = r.Readiness ?? Core.ReadinessModes.Marker,
                ImageId = r.ImageId ?? "",
                ImageSha256 = r.ImageSha256 ?? "",
                ImageSshKeys = r.SshKeys ?? "",
                ImagePasswordHash = r.PasswordHash ?? "",
                RestoreGeneration = r.RestoreGeneration,
                RestoreSnapshot = r.RestoreSnapshot ?? "",
                DebugEndpoint = r.DebugPort is { } port ? debug.EndpointOf(port) : "",
                Project = r.Project,
                Owner = r.Owner ?? "",
                ContainerImage = r.BuiltImageId is { } built ? ContainerImageBuilds.EngineReference(built) : "",
                ContainerRegistryInsecure = r.Type == Core.InstanceTypes.Container && Core.RegistryReferences.HostOf(r.Image) is { } registry
                    && defaults.Value.InsecureRegistries.Contains(registry, StringComparer.OrdinalIgnoreCase),
            };
            if (Json.Container(r.Container) is { } spec)
            {
                d.ContainerCommand.AddRange(spec.Command);
                foreach (var (k, v) in spec.Env) d.ContainerEnv[k] = v;
                d.ContainerPorts.AddRange(spec.Ports.Select(p => new ContainerPort { ContainerPort_ = p.ContainerPort, HostPort = p.HostPort, HostIp = p.HostIp }));
                d.ContainerVolumes.AddRange(spec.Volumes.Select(v => new ContainerVolume { Source = v.Source, Target = v.Target, ReadOnly = v.ReadOnly }));
                d.ContainerStdin = spec.Interactive;
                d.ContainerTty = spec.Tty;
                d.ContainerCpuLimit = spec.CpuLimit ?? 0;
            }
            state.Instances.Add(d);
        }
        // VMs made from a libvirt domain template: the node's libvirt driver runs them.
        foreach (var (id, xml) in c.Query<(string Id, string Xml)>(
            "SELECT id, template_xml FROM instances WHERE node_id = @nodeId AND template_xml IS NOT NULL", new { nodeId }))
        {
            if (byId.TryGetValue(id, out var d)) d.DomainTemplate = xml;
        }
        AddNetworks(c, nodeId, state);
        migrations.AddDesired(c, nodeId, byId);
        Snapshots.SnapshotService.AddDesired(c, nodeId, byId);
        Volumes.VolumeService.AddDesired(c, nodeId, state, byId);
        return state;
    }, ct);
}
