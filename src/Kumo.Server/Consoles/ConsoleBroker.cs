using System.Collections.Concurrent;
using System.Threading.Channels;
using Grpc.Core;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Api;

namespace Kumo.Server.Consoles;

/// <summary>
/// Pairs console sessions asked for on the REST side with the agent calls that serve them. Agents dial out, so kumod
/// asks the node on its ConsoleWatch stream for a session, and the agent answers with a ConsoleStream call naming it.
/// </summary>
public sealed class ConsoleBroker
{
    /// <summary>How long an agent has to answer a session request before the node counts as unavailable.</summary>
    public static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<string, Channel<ConsoleSessionRequest>> _watchers = new();
    private readonly ConcurrentDictionary<string, (string NodeId, TaskCompletionSource<ConsoleLink> Link)> _pending = new();

    /// <summary>Whether the node's agent is connected and listening for console sessions.</summary>
    public bool IsConnected(string nodeId) => _watchers.ContainsKey(nodeId);

    /// <summary>The session requests for a node, for as long as its agent keeps the watch open.</summary>
    public async Task WatchAsync(string nodeId, IServerStreamWriter<ConsoleSessionRequest> stream, CancellationToken ct)
    {
        var channel = Channel.CreateUnbounded<ConsoleSessionRequest>();
        // A reconnecting agent replaces its previous watch; the old one ends.
        if (_watchers.TryGetValue(nodeId, out var previous)) previous.Writer.TryComplete();
        _watchers[nodeId] = channel;
        try
        {
            await foreach (var request in channel.Reader.ReadAllAsync(ct))
                await stream.WriteAsync(request, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        finally
        {
            _watchers.TryRemove(new KeyValuePair<string, Channel<ConsoleSessionRequest>>(nodeId, channel));
        }
    }

    /// <summary>Asks the node for a session on an instance's console and waits for the agent to answer it.</summary>
    public Task<ConsoleLink> OpenAsync(string nodeId, string nodeName, string instanceId, bool logOnly, CancellationToken ct) =>
        OpenAsync(nodeId, nodeName, new ConsoleSessionRequest { InstanceId = instanceId, LogOnly = logOnly }, ct);

    /// <summary>
    /// Asks the node for a session (a VM's console, or a container's logs, exec or attach: <paramref name="request"/>
    /// says which) and waits for the agent to answer it. An agent that cannot serve it answers with an error frame,
    /// which is then the first frame of <see cref="ConsoleLink.FromAgent"/>.
    /// </summary>
    public async Task<ConsoleLink> OpenAsync(string nodeId, string nodeName, ConsoleSessionRequest request, CancellationToken ct)
    {
        if (!_watchers.TryGetValue(nodeId, out var watcher))
            throw Unavailable(nodeName);
        var sessionId = Guid.NewGuid().ToString("N");
        var link = new TaskCompletionSource<ConsoleLink>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[sessionId] = (nodeId, link);
        try
        {
            var asked = request.Clone();
            asked.SessionId = sessionId;
            if (!watcher.Writer.TryWrite(asked))
                throw Unavailable(nodeName);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(AnswerTimeout);
            try
            {
                return await link.Task.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw Unavailable(nodeName);
            }
        }
        finally
        {
            _pending.TryRemove(sessionId, out _);
        }
    }

    /// <summary>
    /// Serves one ConsoleStream call of a node's agent: pairs it with the session its first frame names, then relays
    /// until either side ends. <paramref name="nodeId"/> is the node the caller's certificate speaks for.
    /// </summary>
    public async Task ServeAsync(ConsoleFrame first, string nodeId, IAsyncStreamReader<ConsoleFrame> fromAgent,
        IServerStreamWriter<ConsoleFrame> toAgent, CancellationToken ct)
    {
        if (!_pending.TryRemove(first.SessionId, out var pending))
            throw new RpcException(new Status(StatusCode.NotFound, "no such console session (it timed out or was never asked for)"));
        if (pending.NodeId != nodeId)
        {
            pending.Link.TrySetException(new InvalidOperationException("answered by the wrong node"));
            throw new RpcException(new Status(StatusCode.PermissionDenied, "the console session was asked of another node"));
        }
        var link = new ConsoleLink(toAgent);
        if (!string.IsNullOrEmpty(first.Error) || !first.Data.IsEmpty || !string.IsNullOrEmpty(first.Notice) || first.Exited) link.Deliver(first);
        if (!pending.Link.TrySetResult(link)) return;
        using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var pump = Task.Run(async () =>
        {
            try
            {
                while (await fromAgent.MoveNext(done.Token))
                    link.Deliver(fromAgent.Current);
            }
            catch (Exception e) when (e is OperationCanceledException or RpcException or IOException)
            {
            }
            finally
            {
                link.EndOutput();
            }
        }, CancellationToken.None);
        try
        {
            await Task.WhenAny(pump, link.Closed.WaitAsync(ct));
        }
        finally
        {
            await done.CancelAsync();
            await pump;
        }
    }

    public static ProblemException Unavailable(string nodeName) =>
        new(503, ProblemTypes.NodeUnavailable, "The instance's node is not connected",
            $"node {nodeName} is not connected to kumod right now; try again when it is back (kumo node list)");
}

/// <summary>One console session as kumod sees it: frames from the agent, and a way to type.</summary>
public sealed class ConsoleLink(IServerStreamWriter<ConsoleFrame> toAgent)
{
    private readonly Channel<ConsoleFrame> _fromAgent = Channel.CreateUnbounded<ConsoleFrame>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _write = new(1, 1);
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>What the agent sends: output, notices, an error; completes when the agent ends the session.</summary>
    public ChannelReader<ConsoleFrame> FromAgent => _fromAgent.Reader;

    internal Task Closed => _closed.Task;

    /// <summary>The agent's refusal, when it answered the session request with one (nothing else follows it).</summary>
    public string? Refusal => _fromAgent.Reader.TryPeek(out var first) && !string.IsNullOrEmpty(first.Error) ? first.Error : null;

    internal void Deliver(ConsoleFrame frame) => _fromAgent.Writer.TryWrite(frame);

    internal void EndOutput() => _fromAgent.Writer.TryComplete();

    public Task SendAsync(ReadOnlyMemory<byte> keys, CancellationToken ct) =>
        SendAsync(new ConsoleFrame { Data = Google.Protobuf.ByteString.CopyFrom(keys.Span) }, ct);

    /// <summary>Tells the agent that the viewer's input ended (an exec'd command then reads end of file).</summary>
    public Task CloseInputAsync(CancellationToken ct) => SendAsync(new ConsoleFrame { CloseInput = true }, ct);

    /// <summary>Tells the agent the viewer's terminal size (rows and columns) changed.</summary>
    public Task ResizeAsync(int rows, int cols, CancellationToken ct) => SendAsync(new ConsoleFrame { ResizeRows = rows, ResizeCols = cols }, ct);

    private async Task SendAsync(ConsoleFrame frame, CancellationToken ct)
    {
        if (_closed.Task.IsCompleted) return;
        await _write.WaitAsync(ct);
        try
        {
            await toAgent.WriteAsync(frame, ct);
        }
        catch (InvalidOperationException)
        {
            // The call already ended.
        }
        finally
        {
            _write.Release();
        }
    }

    /// <summary>Ends the session from kumod's side: the agent's call completes and its viewer leaves.</summary>
    public void Close() => _closed.TrySetResult();
}
