using System.Collections.Concurrent;

namespace Kumo.Server.Agents;

/// <summary>
/// Wakes a node's desired-state stream when anything assigned to it changed. A signal carries no data: the stream
/// re-reads the full desired state, so a missed or merged signal can never lose a change.
/// </summary>
public sealed class NodeSignals
{
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _signals = new();

    public void Notify(string nodeId)
    {
        var s = _signals.GetOrAdd(nodeId, _ => new SemaphoreSlim(0, 1));
        try
        {
            if (s.CurrentCount == 0) s.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already signalled; one wake-up is enough.
        }
    }

    public void NotifyAll()
    {
        foreach (var id in _signals.Keys) Notify(id);
    }

    public Task WaitAsync(string nodeId, TimeSpan timeout, CancellationToken ct) =>
        _signals.GetOrAdd(nodeId, _ => new SemaphoreSlim(0, 1)).WaitAsync(timeout, ct);
}
