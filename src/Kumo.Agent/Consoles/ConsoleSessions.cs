using Google.Protobuf;
using Grpc.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Consoles;

/// <summary>
/// Answers kumod's console session requests: for each one the agent opens a ConsoleStream call and relays between it
/// and the guest's <see cref="GuestConsole"/>, as one remote viewer. Sessions on containers (logs, exec, attach) ride
/// the same calls and are served by <see cref="Containers.ContainerSessions"/>.
/// </summary>
public sealed partial class ConsoleSessions(ConsoleHub hub, Containers.ContainerSessions containers, ILogger<ConsoleSessions> logger)
{
    /// <summary>Told once to a remote viewer whose keys are refused.</summary>
    public const string KeyboardTaken = "kumo: another viewer is typing on this console; your input is ignored until they leave";

    /// <summary>Runs until the watch ends (kumod went away); sessions end with the connection.</summary>
    public async Task WatchAsync(AgentControl.AgentControlClient client, string nodeId, CancellationToken ct)
    {
        using var watch = client.ConsoleWatch(new ConsoleWatchRequest { NodeId = nodeId }, cancellationToken: ct);
        await foreach (var request in watch.ResponseStream.ReadAllAsync(ct))
            _ = ServeAsync(client, nodeId, request, ct);
    }

    private async Task ServeAsync(AgentControl.AgentControlClient client, string nodeId, ConsoleSessionRequest request, CancellationToken ct)
    {
        try
        {
            using var session = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var call = client.ConsoleStream(cancellationToken: session.Token);
            var send = new SemaphoreSlim(1, 1);
            async Task SendAsync(ConsoleFrame frame)
            {
                await send.WaitAsync(session.Token);
                try
                {
                    await call.RequestStream.WriteAsync(frame, session.Token);
                }
                finally
                {
                    send.Release();
                }
            }

            if (request.ContainerKind.Length > 0)
            {
                await containers.ServeAsync(request, new Containers.SessionCall(nodeId, SendAsync, call.ResponseStream, call.RequestStream), session.Token);
                return;
            }
            var console = hub.Get(request.InstanceId);
            if (console is null)
            {
                await SendAsync(new ConsoleFrame { NodeId = nodeId, SessionId = request.SessionId, Error = "the instance has no console on this node yet" });
                await call.RequestStream.CompleteAsync();
                return;
            }
            await SendAsync(new ConsoleFrame { NodeId = nodeId, SessionId = request.SessionId });
            if (request.LogOnly)
            {
                var recent = console.Recent();
                // Well under gRPC's message limit per frame.
                for (var at = 0; at < recent.Length; at += 32 * 1024)
                    await SendAsync(new ConsoleFrame { Data = ByteString.CopyFrom(recent, at, Math.Min(32 * 1024, recent.Length - at)) });
                await call.RequestStream.CompleteAsync();
                // Wait for kumod to end the call, so the last frames are not cut off by a cancellation.
                while (await call.ResponseStream.MoveNext(session.Token))
                {
                }
                return;
            }

            var viewer = console.Join(local: false);
            try
            {
                var output = Task.Run(async () =>
                {
                    await foreach (var chunk in viewer.Output.ReadAllAsync(session.Token))
                        await SendAsync(new ConsoleFrame { Data = ByteString.CopyFrom(chunk) });
                }, CancellationToken.None);
                var input = Task.Run(async () =>
                {
                    var told = false;
                    while (await call.ResponseStream.MoveNext(session.Token))
                    {
                        var keys = call.ResponseStream.Current.Data;
                        if (keys.IsEmpty || await console.InputAsync(viewer, keys.Memory, session.Token)) continue;
                        if (!told) await SendAsync(new ConsoleFrame { Notice = KeyboardTaken });
                        told = true;
                    }
                }, CancellationToken.None);
                await Task.WhenAny(output, input);
                await session.CancelAsync();
                await Task.WhenAll(output, input).ContinueWith(_ => { }, TaskScheduler.Default);
            }
            finally
            {
                console.Leave(viewer);
            }
        }
        catch (Exception e) when (e is RpcException or OperationCanceledException or IOException or InvalidOperationException
            or Docker.DotNet.DockerApiException or HttpRequestException)
        {
            if (!ct.IsCancellationRequested) LogSessionEnded(request.InstanceId, $"{e.GetType().Name}: {e.Message}");
        }
    }

    [LoggerMessage(LogLevel.Debug, "console session for {Id} ended: {Reason}")]
    private partial void LogSessionEnded(string id, string reason);
}
