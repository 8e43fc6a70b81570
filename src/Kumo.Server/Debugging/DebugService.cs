using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Instances;
using Kumo.Server.Storage;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Debugging;

/// <summary>The admin's pool of gdb stub ports (kumod --debug-ports, --debug-bind).</summary>
public sealed record DebugPortOptions
{
    public int First { get; init; } = 21000;
    public int Last { get; init; } = 21499;

    /// <summary>The address QEMU's stub binds on the node; loopback unless the admin says otherwise.</summary>
    public string Bind { get; init; } = "127.0.0.1";

    /// <summary>Parses "FIRST-LAST" (or one port); null with the reason when it is not a range of TCP ports.</summary>
    public static (int First, int Last)? ParseRange(string text)
    {
        var parts = text.Split('-', 2);
        if (!int.TryParse(parts[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var first)) return null;
        var last = first;
        if (parts.Length == 2 && !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out last)) return null;
        return first is >= 1 and <= 65535 && last >= first && last <= 65535 ? (first, last) : null;
    }
}

/// <summary>
/// gdb stubs of VMs. A port is allocated in the same write that records it and released in the same write that stops
/// or deletes the VM (see <see cref="InstanceService"/>), so a crash of kumod can neither leak nor double-book one;
/// the node is told through the desired state (level-triggered) and confirms in its status reports.
/// </summary>
public sealed class DebugService(Database db, InstanceService instances, NodeSignals signals, IOptions<DebugPortOptions> options, TimeProvider time)
{
    /// <summary>How long POST waits for the node to confirm the stub listens.</summary>
    public static readonly TimeSpan ConfirmTimeout = TimeSpan.FromSeconds(30);

    private DebugPortOptions Pool => options.Value;

    /// <summary>What the agent is asked to listen on for a port.</summary>
    internal string EndpointOf(long port) => $"{Pool.Bind}:{port}";

    public async Task<DebugStub> GetAsync(Caller caller, string project, string name, CancellationToken ct)
    {
        var vm = await instances.GetOwnedAsync(caller, project, name, "gdb stub", ct);
        return await ReadAsync(vm.Id, vm.NodeName, ct);
    }

    public async Task<DebugStub> EnableAsync(Caller caller, string project, string name, CancellationToken ct)
    {
        var vm = await instances.GetOwnedAsync(caller, project, name, "gdb stub", ct);
        if (vm.Type != "vm") throw ProblemException.InvalidState($"instance '{name}' is a {vm.Type}; only VMs have a gdb stub");
        var port = await db.WriteAsync(ctx =>
        {
            var c = ctx.Connection;
            var now = c.QuerySingleOrDefault<(string DesiredPower, string? NodeId)>(
                "SELECT desired_power, node_id FROM instances WHERE id = @Id", vm, ctx.Transaction);
            if (now.DesiredPower != PowerStates.Running || now.NodeId is null)
                throw ProblemException.InvalidState($"vm '{name}' is not running; start it first (kumo vm start {name})");
            if (c.QuerySingleOrDefault<long?>("SELECT port FROM debug_ports WHERE instance_id = @Id", vm, ctx.Transaction) is { } existing)
                return existing;
            var used = c.Query<long>("SELECT port FROM debug_ports WHERE port BETWEEN @First AND @Last", Pool, ctx.Transaction).ToHashSet();
            for (long p = Pool.First; p <= Pool.Last; p++)
            {
                if (used.Contains(p)) continue;
                c.Execute("INSERT INTO debug_ports (instance_id, port, node_id, created_at) VALUES (@Id, @p, @node, @at)",
                    new { vm.Id, p, node = now.NodeId, at = Json.Now(time) }, ctx.Transaction);
                var nodeId = now.NodeId;
                ctx.OnCommit(() => signals.Notify(nodeId));
                return p;
            }
            throw new ProblemException(409, ProblemTypes.DebugPortsExhausted, "No debug port is free",
                $"all {Pool.Last - Pool.First + 1} ports of the debug pool ({Pool.First}-{Pool.Last}) are in use; ask an admin for a larger --debug-ports range, or turn off a stub you do not need (kumo vm debug NAME --off)");
        }, ct);

        var deadline = time.GetUtcNow() + ConfirmTimeout;
        while (true)
        {
            var row = await db.ReadAsync(c => c.QuerySingleOrDefault<(long Port, long Active, string? Error)?>(
                "SELECT port, active, error FROM debug_ports WHERE instance_id = @Id", vm), ct);
            if (row is null)
                throw ProblemException.InvalidState($"vm '{name}' stopped before its gdb stub was up");
            if (row.Value.Active == 1) return await ReadAsync(vm.Id, vm.NodeName, ct);
            if (row.Value.Error is { } error)
            {
                await ReleaseAsync(vm.Id, ct);
                throw ProblemException.InvalidState($"QEMU could not open the gdb stub on {EndpointOf(port)}: {error}");
            }
            if (time.GetUtcNow() > deadline)
            {
                await ReleaseAsync(vm.Id, ct);
                throw new ProblemException(503, ProblemTypes.NodeUnavailable, "The node did not confirm the gdb stub",
                    $"node {vm.NodeName} did not start the gdb stub within {ConfirmTimeout.TotalSeconds:0}s; the port was released, try again");
            }
            await Task.Delay(100, ct);
        }
    }

    public async Task<DebugStub> DisableAsync(Caller caller, string project, string name, CancellationToken ct)
    {
        var vm = await instances.GetOwnedAsync(caller, project, name, "gdb stub", ct);
        await ReleaseAsync(vm.Id, ct);
        return new DebugStub { Enabled = false };
    }

    private Task ReleaseAsync(string instanceId, CancellationToken ct) => db.WriteAsync(ctx =>
    {
        var node = ctx.Connection.QuerySingleOrDefault<string?>("SELECT node_id FROM debug_ports WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction);
        if (node is null) return;
        ctx.Connection.Execute("DELETE FROM debug_ports WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction);
        ctx.OnCommit(() => signals.Notify(node));
    }, ct);

    private async Task<DebugStub> ReadAsync(string instanceId, string? nodeName, CancellationToken ct)
    {
        var row = await db.ReadAsync(c => c.QuerySingleOrDefault<(long Port, long Active)?>(
            "SELECT port, active FROM debug_ports WHERE instance_id = @instanceId", new { instanceId }), ct);
        if (row is null) return new DebugStub { Enabled = false };
        // A stub on every address is reached through the node's own name.
        var host = Pool.Bind is "0.0.0.0" or "::" ? nodeName ?? Pool.Bind : Pool.Bind;
        var hostPort = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]:{row.Value.Port}" : $"{host}:{row.Value.Port}";
        return new DebugStub { Enabled = true, Host = host, Port = (int)row.Value.Port, Active = row.Value.Active == 1, Target = $"target remote {hostPort}" };
    }

    /// <summary>A node's report of where an instance's stub listens (empty: nowhere) and why it could not.</summary>
    internal void Observe(WriteContext ctx, string instanceId, string endpoint, string error) =>
        ctx.Connection.Execute(
            "UPDATE debug_ports SET active = (@endpoint = @bind || ':' || port), error = NULLIF(@error, '') WHERE instance_id = @instanceId",
            new { instanceId, endpoint, error, bind = Pool.Bind }, ctx.Transaction);

    /// <summary>At start: ports of VMs that are gone or not meant to run are free (the write that stopped them released them).</summary>
    internal void Sweep() => db.WriteAsync(ctx => ctx.Connection.Execute(
        "DELETE FROM debug_ports WHERE instance_id NOT IN (SELECT id FROM instances WHERE desired_power = 'running')", transaction: ctx.Transaction),
        CancellationToken.None).GetAwaiter().GetResult();
}
