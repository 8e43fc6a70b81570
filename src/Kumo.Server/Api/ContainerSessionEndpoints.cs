using System.Net.WebSockets;
using System.Text.Json;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Consoles;
using Kumo.Server.Identity;
using Kumo.Server.Instances;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>
/// A container's logs (streamed plain text), exec and attach (WebSockets), carried from the node through the console
/// broker's session calls. Owner and admins only, as for a VM's console: exec is a shell in someone's container.
/// </summary>
/// <remarks>
/// The WebSocket framing: a binary message starts with a stream byte (0 stdin from the client; 1 stdout, 2 stderr
/// from kumod) followed by the bytes; a text message is a JSON object: from kumod <c>{"exitCode":N}</c> (the process
/// ended), <c>{"notice":"..."}</c> or <c>{"error":"..."}</c>; from the client <c>{"closeStdin":true}</c> and
/// <c>{"resize":{"rows":R,"cols":C}}</c> (the terminal's size, for a session with a terminal).
/// </remarks>
internal static class ContainerSessionEndpoints
{
    public const byte Stdin = 0;

    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/instances").WithTags("instances");

        g.MapGet("/{name}/logs", async (InstanceService s, ProjectService p, ConsoleBroker broker, HttpContext http, string name, string? project,
            bool? follow, int? tail, CancellationToken ct) =>
        {
            var ctr = await ContainerAsync(s, p, http, name, project, "logs", ct);
            if (tail is < 0) throw ProblemException.Validation("tail", "tail must be 0 or more lines");
            var request = new ConsoleSessionRequest { InstanceId = ctr.Id, ContainerKind = "logs", Follow = follow == true };
            if (tail is { } t) request.Tail = t;
            var link = await OpenAsync(broker, ctr, request, ct);
            try
            {
                http.Response.ContentType = "text/plain; charset=utf-8";
                // A followed log has no end to wait for: every chunk goes out as it comes.
                http.Features.Get<IHttpResponseBodyFeature>()!.DisableBuffering();
                await http.Response.StartAsync(ct);
                await foreach (var frame in link.FromAgent.ReadAllAsync(ct))
                {
                    if (frame.Data.IsEmpty) continue;
                    await http.Response.Body.WriteAsync(frame.Data.Memory, ct);
                    await http.Response.Body.FlushAsync(ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // The reader left (Ctrl-C on kumo ct logs -f).
            }
            finally
            {
                link.Close();
            }
            return Results.Empty;
        }).Produces<string>(200, "text/plain").Requires("instance", "logs");

        g.MapGet("/{name}/exec", async (InstanceService s, ProjectService p, ConsoleBroker broker, HttpContext http, string name, string? project,
            string[]? command, bool? stdin, bool? tty, CancellationToken ct) =>
        {
            var ctr = await ContainerAsync(s, p, http, name, project, "exec", ct);
            if (command is null || command.Length == 0 || command[0].Length == 0)
                throw ProblemException.Validation("command", "give the command to run: ?command=ls&command=/ (kumo ct exec NAME -- ls /)");
            if (ctr.State != InstanceStates.Running)
                throw ProblemException.InvalidState($"container '{name}' is {ctr.State}; exec needs a running container (kumo ct start {name})");
            var request = new ConsoleSessionRequest { InstanceId = ctr.Id, ContainerKind = "exec", Stdin = stdin == true, Tty = tty == true };
            request.ExecCommand.AddRange(command);
            await ServeWebSocketAsync(broker, http, ctr, request, ct);
            return Results.Empty;
        }).Requires("instance", "exec");

        g.MapGet("/{name}/attach", async (InstanceService s, ProjectService p, ConsoleBroker broker, HttpContext http, string name, string? project,
            CancellationToken ct) =>
        {
            var ctr = await ContainerAsync(s, p, http, name, project, "attach", ct);
            if (ctr.State != InstanceStates.Running)
                throw ProblemException.InvalidState($"container '{name}' is {ctr.State}; attach needs a running container (kumo ct start {name})");
            await ServeWebSocketAsync(broker, http, ctr, new ConsoleSessionRequest { InstanceId = ctr.Id, ContainerKind = "attach" }, ct);
            return Results.Empty;
        }).Requires("instance", "attach");
    }

    private static async Task<Storage.InstanceRow> ContainerAsync(InstanceService s, ProjectService p, HttpContext http, string name, string? project,
        string what, CancellationToken ct)
    {
        var caller = Caller.Of(http);
        var row = await s.GetOwnedAsync(caller, await p.ResolveAsync(caller, project, ct), name, what, ct);
        if (row.Type != InstanceTypes.Container)
            throw ProblemException.InvalidState($"instance '{name}' is a {row.Type}; only containers have {what} (a VM has a console: kumo vm console {name})");
        return row;
    }

    /// <summary>Opens the session on the node; the agent's refusal (e.g. the container stopped meanwhile) becomes a 409.</summary>
    private static async Task<ConsoleLink> OpenAsync(ConsoleBroker broker, Storage.InstanceRow ctr, ConsoleSessionRequest request, CancellationToken ct)
    {
        if (ctr.NodeId is null || !broker.IsConnected(ctr.NodeId)) throw ConsoleBroker.Unavailable(ctr.NodeName ?? "(none)");
        var link = await broker.OpenAsync(ctr.NodeId, ctr.NodeName ?? ctr.NodeId, request, ct);
        if (link.Refusal is { } refusal)
        {
            link.Close();
            throw ProblemException.InvalidState($"container '{ctr.Name}': {refusal}");
        }
        return link;
    }

    private static async Task ServeWebSocketAsync(ConsoleBroker broker, HttpContext http, Storage.InstanceRow ctr, ConsoleSessionRequest request,
        CancellationToken ct)
    {
        // Every check a WebSocket would meet comes first, so a plain GET tells a client why its WebSocket was refused.
        if (ctr.NodeId is null || !broker.IsConnected(ctr.NodeId)) throw ConsoleBroker.Unavailable(ctr.NodeName ?? "(none)");
        if (!http.WebSockets.IsWebSocketRequest)
            throw new ProblemException(400, ProblemTypes.WebSocketRequired, "This endpoint speaks WebSocket",
                $"connect with a WebSocket client (kumo ct {request.ContainerKind} {ctr.Name})");
        var link = await OpenAsync(broker, ctr, request, ct);
        try
        {
            using var ws = await http.WebSockets.AcceptWebSocketAsync();
            await RelayAsync(ws, link, ct);
        }
        finally
        {
            link.Close();
        }
    }

    /// <summary>Relays until the client or the agent ends the session.</summary>
    private static async Task RelayAsync(WebSocket ws, ConsoleLink link, CancellationToken ct)
    {
        using var session = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var toClient = Task.Run(async () =>
        {
            await foreach (var frame in link.FromAgent.ReadAllAsync(session.Token))
            {
                if (!frame.Data.IsEmpty)
                {
                    var message = new byte[frame.Data.Length + 1];
                    message[0] = (byte)(frame.Stream == 2 ? 2 : 1);
                    frame.Data.CopyTo(message, 1);
                    await ws.SendAsync(message, WebSocketMessageType.Binary, true, session.Token);
                }
                if (!string.IsNullOrEmpty(frame.Notice)) await SendJsonAsync(ws, new Dictionary<string, object> { ["notice"] = frame.Notice }, session.Token);
                if (frame.Exited) await SendJsonAsync(ws, new Dictionary<string, object> { ["exitCode"] = frame.ExitCode }, session.Token);
                if (!string.IsNullOrEmpty(frame.Error))
                {
                    await SendJsonAsync(ws, new Dictionary<string, object> { ["error"] = frame.Error }, session.Token);
                    break;
                }
            }
        }, CancellationToken.None);
        var fromClient = Task.Run(async () =>
        {
            var buffer = new byte[16 * 1024];
            var text = new MemoryStream();
            while (true)
            {
                var r = await ws.ReceiveAsync(buffer, session.Token);
                if (r.MessageType == WebSocketMessageType.Close) break;
                if (r.MessageType == WebSocketMessageType.Text)
                {
                    text.Write(buffer, 0, r.Count);
                    if (!r.EndOfMessage) continue;
                    var control = text.ToArray();
                    if (CloseStdin(control)) await link.CloseInputAsync(session.Token);
                    else if (Resize(control) is { } size) await link.ResizeAsync(size.Rows, size.Cols, session.Token);
                    text.SetLength(0);
                    continue;
                }
                // Binary: a stream byte, then the bytes. Only stdin is accepted from a client.
                if (r.Count > 1 && buffer[0] == Stdin) await link.SendAsync(buffer.AsMemory(1, r.Count - 1), session.Token);
            }
        }, CancellationToken.None);
        await Task.WhenAny(toClient, fromClient);
        link.Close();
        try
        {
            if (ws.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var bye = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "session ended", bye.Token);
                // Cancelling a pending receive aborts the connection, and an abort can drop what was sent last (the exit
                // code): let the client answer the close first.
                await fromClient.WaitAsync(bye.Token);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or TimeoutException)
        {
        }
        await session.CancelAsync();
        foreach (var t in new[] { toClient, fromClient })
        {
            try
            {
                await t;
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
            {
                // The client hung up or the agent went away: the session is over either way.
            }
        }
    }

    private static Task SendJsonAsync(WebSocket ws, Dictionary<string, object> message, CancellationToken ct) =>
        ws.SendAsync(JsonSerializer.SerializeToUtf8Bytes(message), WebSocketMessageType.Text, true, ct);

    /// <summary>{"resize":{"rows":R,"cols":C}} with sizes a terminal can have (1-1000); null for anything else.</summary>
    private static (int Rows, int Cols)? Resize(byte[] json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("resize", out var r) && r.ValueKind == JsonValueKind.Object
                && r.TryGetProperty("rows", out var rows) && rows.TryGetInt32(out var rv) && rv is >= 1 and <= 1000
                && r.TryGetProperty("cols", out var cols) && cols.TryGetInt32(out var cv) && cv is >= 1 and <= 1000
                ? (rv, cv)
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static bool CloseStdin(byte[] json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("closeStdin", out var v) && v.ValueKind == JsonValueKind.True;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
