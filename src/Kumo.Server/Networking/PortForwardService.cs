using System.Globalization;
using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Instances;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Networking;

/// <summary>The node ports users may forward to their guests (kumod --port-forward-range).</summary>
public sealed record PortForwardOptions
{
    public int First { get; init; } = 2000;
    public int Last { get; init; } = 9999;

    /// <summary>Ports Kumo itself listens on by default (API, agent gRPC, container proxy): never handed to a guest.</summary>
    public IReadOnlySet<int> Reserved { get; init; } = new HashSet<int> { 7400, 7401, 7480 };
}

/// <summary>
/// Port forwards: node port → guest address:port on its tenant network. A forward is one row, written in the same
/// transaction that checks the port is free, so two users cannot get the same port; it goes with its instance
/// (ON DELETE CASCADE). The instance's node realizes the DNAT from its desired state.
/// </summary>
public sealed class PortForwardService(Database db, InstanceService instances, NodeSignals signals, IOptions<PortForwardOptions> options, TimeProvider time)
{
    /// <summary>More would only be a way to hold the node's ports.</summary>
    public const int MaxPerInstance = 16;

    private PortForwardOptions Range => options.Value;

    public Task<List<PortForward>> ListAsync(string project, CancellationToken ct) =>
        db.ReadAsync(c => Query(c, null, "i.project = @project", new { project }), ct);

    public async Task<List<PortForward>> ListForAsync(Caller caller, string project, string instance, CancellationToken ct)
    {
        var vm = await instances.GetOwnedAsync(caller, project, instance, "port forwards", ct);
        return await db.ReadAsync(c => Query(c, null, "f.instance_id = @Id", new { vm.Id }), ct);
    }

    public async Task<PortForward> CreateAsync(Caller caller, string project, string instance, PortForwardsPost? body, CancellationToken ct)
    {
        var (port, publicPort, protocol) = Validate(body);
        var vm = await instances.GetOwnedAsync(caller, project, instance, "port forwards", ct);
        if (vm.Type != InstanceTypes.Vm)
            throw ProblemException.InvalidState($"instance '{instance}' is a {vm.Type}; containers publish ports with kumo ct run -p");
        return await db.WriteAsync(ctx => Add(ctx, vm.Id, instance, vm.NodeId, null, port, publicPort, protocol), ct);
    }

    /// <summary>
    /// Adds a forward inside a write, to the instance's NIC on <paramref name="networkId"/> (or its first NIC). The
    /// public port is the one asked for or the lowest free one of the range.
    /// </summary>
    internal PortForward Add(WriteContext ctx, string instanceId, string instance, string? nodeId, string? networkId, int port, int? publicPort, string protocol)
    {
        var c = ctx.Connection;
        var nic = c.QueryFirstOrDefault<(string NetworkId, string Address)?>(
            "SELECT a.network_id, a.address FROM network_addresses a JOIN networks n ON n.id = a.network_id WHERE a.instance_id = @instanceId AND (@networkId IS NULL OR n.id = @networkId) ORDER BY n.name",
            new { instanceId, networkId }, ctx.Transaction)
            ?? throw ProblemException.InvalidState(
                $"instance '{instance}' is not on a tenant network (it has QEMU's user-mode network); create it with --network NET to forward ports to it");
        if (c.ExecuteScalar<long>("SELECT count(*) FROM port_forwards WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction) >= MaxPerInstance)
            throw ProblemException.InvalidState($"instance '{instance}' already has {MaxPerInstance} port forwards, the most one instance may have");
        var taken = c.Query<long>("SELECT public_port FROM port_forwards WHERE protocol = @protocol", new { protocol }, ctx.Transaction).ToHashSet();
        if (publicPort is { } wanted)
        {
            if (taken.Contains(wanted))
                throw ProblemException.Conflict($"public port {wanted}/{protocol} is already forwarded; choose another or omit --public to get a free one");
        }
        else
        {
            publicPort = Enumerable.Range(Range.First, Range.Last - Range.First + 1).Cast<int?>()
                .FirstOrDefault(p => !taken.Contains(p!.Value) && !Range.Reserved.Contains(p.Value))
                ?? throw ProblemException.InvalidState($"every port of the forward range {Range.First}-{Range.Last} is taken for {protocol}");
        }
        try
        {
            c.Execute(
                """
                    INSERT INTO port_forwards (protocol, public_port, instance_id, network_id, address, port, created_at)
                    VALUES (@protocol, @publicPort, @Id, @NetworkId, @Address, @port, @at)
                    """, new { protocol, publicPort, Id = instanceId, nic.NetworkId, nic.Address, port, at = Json.Now(time) }, ctx.Transaction);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"public port {publicPort}/{protocol} is already forwarded");
        }
        if (nodeId is not null) ctx.OnCommit(() => signals.Notify(nodeId));
        return Query(c, ctx.Transaction, "f.protocol = @protocol AND f.public_port = @publicPort", new { protocol, publicPort }).Single();
    }

    public async Task DeleteAsync(Caller caller, string project, string instance, int publicPort, string? protocol, CancellationToken ct)
    {
        protocol ??= PortProtocols.Tcp;
        var vm = await instances.GetOwnedAsync(caller, project, instance, "port forwards", ct);
        await db.WriteAsync(ctx =>
        {
            var n = ctx.Connection.Execute("DELETE FROM port_forwards WHERE instance_id = @Id AND protocol = @protocol AND public_port = @publicPort",
                new { vm.Id, protocol, publicPort }, ctx.Transaction);
            if (n == 0) throw ProblemException.NotFound("port forward", $"{publicPort}/{protocol} of {instance}");
            if (vm.NodeId is { } nodeId) ctx.OnCommit(() => signals.Notify(nodeId));
        }, ct);
    }

    /// <summary>Forwards of the instances on one node, by network id (the node's desired state).</summary>
    internal static ILookup<string, (string Protocol, int PublicPort, string Address, int Port)> ForNode(SqliteConnection c, string nodeId) =>
        c.Query<(string NetworkId, string Protocol, long PublicPort, string Address, long Port)>(
            """
            SELECT f.network_id, f.protocol, f.public_port, f.address, f.port FROM port_forwards f
            JOIN instances i ON i.id = f.instance_id WHERE i.node_id = @nodeId ORDER BY f.protocol, f.public_port
            """, new { nodeId })
            .ToLookup(f => f.NetworkId, f => (f.Protocol, (int)f.PublicPort, f.Address, (int)f.Port));

    private (int Port, int? PublicPort, string Protocol) Validate(PortForwardsPost? body)
    {
        if (body is null)
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object");
        var errors = new Dictionary<string, string[]>();
        if (body.Port is not (>= 1 and <= 65535))
            errors["port"] = [body.Port is null ? "port (the guest's port) is required" : $"port must be between 1 and 65535, got {body.Port}"];
        if (body.PublicPort is { } pub)
        {
            if (pub < Range.First || pub > Range.Last)
                errors["publicPort"] = [$"public port {pub} is outside the forward range {Range.First}-{Range.Last} the administrator allows"];
            else if (Range.Reserved.Contains(pub))
                errors["publicPort"] = [$"public port {pub} is used by Kumo itself"];
        }
        var protocol = body.Protocol ?? PortProtocols.Tcp;
        if (protocol is not (PortProtocols.Tcp or PortProtocols.Udp)) errors["protocol"] = [$"protocol '{protocol}' is not known; use tcp or udp"];
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        return (body.Port!.Value, body.PublicPort, protocol);
    }

    private static List<PortForward> Query(SqliteConnection c, SqliteTransaction? tx, string where, object args) =>
        c.Query<(string Instance, string Project, string Protocol, long PublicPort, long Port, string Address, string Network, string? Node, string CreatedAt)>(
            $"""
            SELECT i.name, i.project, f.protocol, f.public_port, f.port, f.address, n.name, nd.name, f.created_at FROM port_forwards f
            JOIN instances i ON i.id = f.instance_id JOIN networks n ON n.id = f.network_id LEFT JOIN nodes nd ON nd.id = i.node_id
            WHERE {where} ORDER BY f.public_port, f.protocol
            """, args, tx)
            .Select(r => new PortForward
            {
                Instance = r.Instance,
                Project = r.Project,
                Protocol = r.Protocol,
                PublicPort = (int)r.PublicPort,
                Port = (int)r.Port,
                Address = r.Address,
                Network = r.Network,
                Node = r.Node,
                CreatedAt = Json.Time(r.CreatedAt),
            }).ToList();

    /// <summary>"FIRST-LAST" between 1024 and 65535, or null.</summary>
    public static (int First, int Last)? ParseRange(string text)
    {
        var parts = text.Split('-', 2);
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var first)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var last)) return null;
        return first >= 1024 && last <= 65535 && first <= last ? (first, last) : null;
    }
}
