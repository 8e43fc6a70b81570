using System.Collections.Concurrent;
using System.Threading.Channels;
using Kumo.Core;

namespace Kumo.Server.Operations;

/// <summary>In-process fan-out of operation changes to SSE streams and waiters. The database stays the truth.</summary>
public sealed class OperationHub
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<Channel<OperationEvent>, byte>> _subscribers = new();

    public Subscription Subscribe(string operationId)
    {
        var channel = Channel.CreateUnbounded<OperationEvent>();
        _subscribers.GetOrAdd(operationId, _ => new()).TryAdd(channel, 0);
        return new Subscription(this, operationId, channel);
    }

    public void Publish(OperationEvent e)
    {
        if (!_subscribers.TryGetValue(e.OperationId, out var subs)) return;
        foreach (var ch in subs.Keys) ch.Writer.TryWrite(e);
    }

    private void Unsubscribe(string operationId, Channel<OperationEvent> channel)
    {
        if (_subscribers.TryGetValue(operationId, out var subs))
        {
            subs.TryRemove(channel, out _);
            if (subs.IsEmpty) _subscribers.TryRemove(new KeyValuePair<string, ConcurrentDictionary<Channel<OperationEvent>, byte>>(operationId, subs));
        }
    }

    public sealed class Subscription(OperationHub hub, string operationId, Channel<OperationEvent> channel) : IDisposable
    {
        public ChannelReader<OperationEvent> Reader => channel.Reader;
        public void Dispose() => hub.Unsubscribe(operationId, channel);
    }
}
