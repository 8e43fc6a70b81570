using System.Globalization;
using Docker.DotNet;
using Docker.DotNet.Models;
using Google.Protobuf;
using Grpc.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Containers;

/// <summary>One ConsoleStream call, as a container session sees it: frames go to kumod, the viewer's come back.</summary>
public sealed record SessionCall(string NodeId, Func<ConsoleFrame, Task> SendAsync, IAsyncStreamReader<ConsoleFrame> FromKumod,
    IClientStreamWriter<ConsoleFrame> ToKumod);

/// <summary>
/// Serves kumod's session requests on containers over the console broker's calls: the engine's log of a container
/// (optionally followed), a command run inside it (exec, with its exit code), and its main process's stdin/stdout
/// (attach). Each is one engine stream relayed frame by frame; stdout and stderr keep their stream numbers.
/// </summary>
public sealed partial class ContainerSessions(ContainerEngine engine, ContainerBuilds builds, ILogger<ContainerSessions> logger)
{
    public const string Logs = "logs";
    public const string Exec = "exec";
    public const string Attach = "attach";

    /// <summary>Told to an attached viewer when the container was not started with stdin open.</summary>
    public const string StdinClosed = "kumo: this container's stdin is not open (run it with kumo ct run -i); showing its output only";

    private const int ChunkBytes = 32 * 1024;

    public async Task ServeAsync(ConsoleSessionRequest request, SessionCall call, CancellationToken ct)
    {
        if (ContainerBuilds.Serves(request.ContainerKind))
        {
            await builds.ServeAsync(request, call, ct);
            return;
        }
        var accept = new ConsoleFrame { NodeId = call.NodeId, SessionId = request.SessionId };
        Opened opened;
        try
        {
            opened = await OpenAsync(request, ct);
        }
        catch (Exception e) when (e is SessionRefusedException or DockerApiException or DockerContainerNotFoundException)
        {
            accept.Error = e is DockerApiException d ? $"container engine: {d.ResponseBody.Trim()}" : e.Message;
            await call.SendAsync(accept);
            await call.ToKumod.CompleteAsync();
            return;
        }
        using var stream = opened.Stream;
        accept.Notice = opened.Notice;
        await call.SendAsync(accept);

        using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // The engine's streams do not all honour cancellation: disposing the stream is what unblocks a read.
        await using var unblock = done.Token.Register(stream.Dispose);
        var input = Task.Run(() => RelayInputAsync(call.FromKumod, opened.Writable ? stream : null, opened.Tty ? (rows, cols) => ResizeAsync(opened, rows, cols, done.Token) : null,
            done.Token), CancellationToken.None);
        var output = Task.Run(() => RelayOutputAsync(stream, call, done.Token), CancellationToken.None);
        try
        {
            if (await Task.WhenAny(input, output) == output && await output)
            {
                // The engine ended the stream: the command (or the container) ended, or the log is complete.
                int? code = null;
                try
                {
                    code = await ExitCodeAsync(request, opened, ct);
                }
                catch (Exception e) when (e is DockerApiException or HttpRequestException or IOException)
                {
                    LogNoExitCode(request.InstanceId, e.Message);
                }
                if (code is not null)
                    await call.SendAsync(new ConsoleFrame { Exited = true, ExitCode = code.Value });
                await call.ToKumod.CompleteAsync();
                // kumod ends the call once it has relayed everything; cancelling first could cut the last frames off.
                await input;
            }
            else
            {
                LogEndedByKumod(request.ContainerKind, request.InstanceId, output.IsCompleted);
            }
        }
        finally
        {
            await done.CancelAsync();
            await Task.WhenAll(input, output).ContinueWith(_ => { }, TaskScheduler.Default);
        }
        LogEnded(request.ContainerKind, request.InstanceId);
    }

    private sealed record Opened(MultiplexedStream Stream, string ContainerId, string? ExecId, bool Writable, string Notice, bool Tty = false);

    /// <summary>Resizes the terminal of the exec'd command, or of the container's main process for attach.</summary>
    private async Task ResizeAsync(Opened opened, int rows, int cols, CancellationToken ct)
    {
        var client = await engine.ClientAsync(ct);
        var size = new ContainerResizeParameters { Height = rows, Width = cols };
        if (opened.ExecId is { } execId) await client.Exec.ResizeContainerExecTtyAsync(execId, size, ct);
        else await client.Containers.ResizeContainerTtyAsync(opened.ContainerId, size, ct);
    }

    private async Task<Opened> OpenAsync(ConsoleSessionRequest request, CancellationToken ct)
    {
        var client = await engine.ClientAsync(ct);
        var id = await FindAsync(client, request.InstanceId, ct)
            ?? throw new SessionRefusedException("the container has not been created on its node yet (it was never started)");
        var inspect = await client.Containers.InspectContainerAsync(id, ct);
        switch (request.ContainerKind)
        {
            case Logs:
                var logs = await client.Containers.GetContainerLogsAsync(id, inspect.Config.Tty, new ContainerLogsParameters
                {
                    ShowStdout = true,
                    ShowStderr = true,
                    Follow = request.Follow,
                    Tail = request.HasTail ? request.Tail.ToString(CultureInfo.InvariantCulture) : "all",
                }, ct);
                return new Opened(logs, id, null, false, "");
            case Exec:
                if (!inspect.State.Running) throw new SessionRefusedException("the container is not running");
                if (request.ExecCommand.Count == 0) throw new SessionRefusedException("no command to run");
                var exec = await client.Exec.ExecCreateContainerAsync(id, new ContainerExecCreateParameters
                {
                    Cmd = request.ExecCommand.ToList(),
                    AttachStdin = request.Stdin,
                    AttachStdout = true,
                    AttachStderr = true,
                    Tty = request.Tty,
                }, ct);
                var execStream = await client.Exec.StartAndAttachContainerExecAsync(exec.ID, request.Tty, ct);
                return new Opened(execStream, id, exec.ID, request.Stdin, "", request.Tty);
            case Attach:
                if (!inspect.State.Running) throw new SessionRefusedException("the container is not running");
                var stdin = inspect.Config.OpenStdin;
                var attached = await client.Containers.AttachContainerAsync(id, inspect.Config.Tty, new ContainerAttachParameters
                {
                    Stream = true,
                    Stdin = stdin,
                    Stdout = true,
                    Stderr = true,
                }, ct);
                return new Opened(attached, id, null, stdin, stdin ? "" : StdinClosed, inspect.Config.Tty);
            default:
                throw new SessionRefusedException($"this agent does not know container sessions of kind '{request.ContainerKind}'");
        }
    }

    /// <summary>The engine container of an instance (the oldest, as the reconciler keeps it).</summary>
    private static async Task<string?> FindAsync(DockerClient client, string instanceId, CancellationToken ct)
    {
        var found = await client.Containers.ListContainersAsync(new ContainersListParameters
        {
            All = true,
            Filters = new Dictionary<string, IDictionary<string, bool>>
            {
                ["label"] = new Dictionary<string, bool> { [$"{ContainerReconciler.InstanceLabel}={instanceId}"] = true },
            },
        }, ct);
        return found.OrderBy(c => c.Created).FirstOrDefault()?.ID;
    }

    /// <returns>True when the engine ended the stream; false when the session was ended from kumod's side.</returns>
    private static async Task<bool> RelayOutputAsync(MultiplexedStream stream, SessionCall call, CancellationToken ct)
    {
        var buffer = new byte[ChunkBytes];
        try
        {
            while (true)
            {
                var r = await stream.ReadOutputAsync(buffer, 0, buffer.Length, ct);
                if (r.EOF) return true;
                if (r.Count > 0)
                    await call.SendAsync(new ConsoleFrame { Data = ByteString.CopyFrom(buffer, 0, r.Count), Stream = (int)r.Target });
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or IOException)
        {
            return !ct.IsCancellationRequested;
        }
    }

    /// <summary>
    /// The viewer's input, until kumod ends the call; without a writable stream it is read and dropped. A failed write
    /// to the process's stdin does not end the session: its output (and exit code) may still be on the way.
    /// </summary>
    private async Task RelayInputAsync(IAsyncStreamReader<ConsoleFrame> fromKumod, MultiplexedStream? stdin, Func<int, int, Task>? resize, CancellationToken ct)
    {
        try
        {
            while (await fromKumod.MoveNext(ct))
            {
                var frame = fromKumod.Current;
                if (frame.ResizeRows > 0 && frame.ResizeCols > 0 && resize is not null)
                {
                    try
                    {
                        await resize(frame.ResizeRows, frame.ResizeCols);
                    }
                    catch (Exception e) when (e is DockerApiException or HttpRequestException or IOException)
                    {
                        // A resize racing the command's end is harmless: the session goes on without it.
                        LogResizeFailed(e.Message);
                    }
                }
                if (stdin is null) continue;
                try
                {
                    if (!frame.Data.IsEmpty) await stdin.WriteAsync(frame.Data.ToByteArray(), 0, frame.Data.Length, ct);
                    if (frame.CloseInput) stdin.CloseWrite();
                }
                catch (Exception e) when (e is IOException or NotSupportedException or ObjectDisposedException or System.Net.Sockets.SocketException)
                {
                    LogStdinFailed(e.Message);
                    stdin = null;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or IOException or RpcException)
        {
        }
    }

    /// <summary>How the process ended: exec's command, or the container's main process after attach. Null for logs.</summary>
    private async Task<int?> ExitCodeAsync(ConsoleSessionRequest request, Opened opened, CancellationToken ct)
    {
        var client = await engine.ClientAsync(ct);
        if (opened.ExecId is { } execId)
        {
            // The stream can end a moment before the engine records the exit.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (true)
            {
                var exec = await client.Exec.InspectContainerExecAsync(execId, ct);
                if (!exec.Running || DateTime.UtcNow > deadline) return (int)exec.ExitCode;
                await Task.Delay(20, ct);
            }
        }
        if (request.ContainerKind != Attach) return null;
        var state = (await client.Containers.InspectContainerAsync(opened.ContainerId, ct)).State;
        return state.Running ? null : (int)state.ExitCode;
    }

    [LoggerMessage(LogLevel.Warning, "container session: writing to the process's stdin failed: {Reason}")]
    private partial void LogStdinFailed(string reason);

    [LoggerMessage(LogLevel.Information, "container session: resizing the terminal failed: {Reason}")]
    private partial void LogResizeFailed(string reason);

    [LoggerMessage(LogLevel.Warning, "container session for {Id}: the process's exit code could not be read: {Reason}")]
    private partial void LogNoExitCode(string id, string reason);

    [LoggerMessage(LogLevel.Debug, "container {Kind} session for {Id} ended from kumod's side (engine stream ended: {OutputDone})")]
    private partial void LogEndedByKumod(string kind, string id, bool outputDone);

    [LoggerMessage(LogLevel.Debug, "container {Kind} session for {Id} ended")]
    private partial void LogEnded(string kind, string id);
}

/// <summary>A session the agent cannot serve; the message is for the person who asked.</summary>
public sealed class SessionRefusedException(string message) : Exception(message);
