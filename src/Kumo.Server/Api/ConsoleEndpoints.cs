using System.Net.WebSockets;
using System.Text;
using Kumo.Core;
using Kumo.Server.Consoles;
using Kumo.Server.Identity;
using Kumo.Server.Instances;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>
/// The serial console of a VM: a WebSocket both ways (binary messages carry console bytes; text messages from kumod are
/// notices, e.g. that someone else holds the keyboard), and its recent output as plain text. Owner and admins only.
/// </summary>
internal static class ConsoleEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/instances").WithTags("instances");

        g.MapGet("/{name}/console", async (InstanceService s, ProjectService p, ConsoleBroker broker, HttpContext http, string name, string? project,
            CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var vm = await s.GetOwnedAsync(caller, await p.ResolveAsync(caller, project, ct), name, "console", ct);
            if (vm.Type != "vm") throw ProblemException.InvalidState($"instance '{name}' is a {vm.Type}; only VMs have a serial console");
            if (vm.DesiredPower != PowerStates.Running)
                throw ProblemException.InvalidState($"vm '{name}' is {vm.State}; start it first, or read its recent output: kumo vm console {name} --log");
            // Every check a WebSocket would meet comes first, so a plain GET tells a client why its WebSocket was refused.
            if (vm.NodeId is null || !broker.IsConnected(vm.NodeId)) throw ConsoleBroker.Unavailable(vm.NodeName ?? "(none)");
            if (!http.WebSockets.IsWebSocketRequest)
                throw new ProblemException(400, ProblemTypes.WebSocketRequired, "This endpoint speaks WebSocket",
                    $"connect with a WebSocket client (kumo vm console {name}), or read the recent output with GET {http.Request.Path}/log");
            var link = await broker.OpenAsync(vm.NodeId, vm.NodeName ?? vm.NodeId, vm.Id, logOnly: false, ct);
            try
            {
                using var ws = await http.WebSockets.AcceptWebSocketAsync();
                await RelayAsync(ws, link, ct);
            }
            finally
            {
                link.Close();
            }
            return Results.Empty;
        }).Requires("instance", "console");

        g.MapGet("/{name}/console/log", async (InstanceService s, ProjectService p, ConsoleBroker broker, HttpContext http, string name, string? project,
            CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var vm = await s.GetOwnedAsync(caller, await p.ResolveAsync(caller, project, ct), name, "console", ct);
            if (vm.Type != "vm") throw ProblemException.InvalidState($"instance '{name}' is a {vm.Type}; only VMs have a serial console");
            if (vm.NodeId is null) throw ConsoleBroker.Unavailable("(none)");
            var link = await broker.OpenAsync(vm.NodeId, vm.NodeName ?? vm.NodeId, vm.Id, logOnly: true, ct);
            var output = new MemoryStream();
            try
            {
                await foreach (var frame in link.FromAgent.ReadAllAsync(ct))
                {
                    if (!string.IsNullOrEmpty(frame.Error)) throw ProblemException.InvalidState(frame.Error);
                    frame.Data.WriteTo(output);
                }
            }
            finally
            {
                link.Close();
            }
            return Results.Bytes(output.ToArray(), "text/plain; charset=utf-8");
        }).Produces<string>(200, "text/plain").Requires("instance", "console");
    }

    /// <summary>Relays until the viewer or the agent ends the session.</summary>
    private static async Task RelayAsync(WebSocket ws, ConsoleLink link, CancellationToken ct)
    {
        using var session = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var toViewer = Task.Run(async () =>
        {
            await foreach (var frame in link.FromAgent.ReadAllAsync(session.Token))
            {
                if (!frame.Data.IsEmpty)
                    await ws.SendAsync(frame.Data.Memory, WebSocketMessageType.Binary, true, session.Token);
                if (!string.IsNullOrEmpty(frame.Notice))
                    await ws.SendAsync(Encoding.UTF8.GetBytes(frame.Notice), WebSocketMessageType.Text, true, session.Token);
                if (!string.IsNullOrEmpty(frame.Error))
                {
                    await ws.SendAsync(Encoding.UTF8.GetBytes(frame.Error), WebSocketMessageType.Text, true, session.Token);
                    break;
                }
            }
        }, CancellationToken.None);
        var fromViewer = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            while (true)
            {
                var r = await ws.ReceiveAsync(buffer, session.Token);
                if (r.MessageType == WebSocketMessageType.Close) break;
                if (r.Count > 0) await link.SendAsync(buffer.AsMemory(0, r.Count), session.Token);
            }
        }, CancellationToken.None);
        await Task.WhenAny(toViewer, fromViewer);
        link.Close();
        try
        {
            if (ws.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var bye = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "console session ended", bye.Token);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException)
        {
        }
        await session.CancelAsync();
        foreach (var t in new[] { toViewer, fromViewer })
        {
            try
            {
                await t;
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
            {
                // The viewer hung up or the agent went away: the session is over either way.
            }
        }
    }
}
