namespace Kumo.Server.Storage;

/// <summary>
/// The queue of a single consumer thread that blocks in I/O (the store's writer): producers never block, and the
/// consumer sleeps in a plain wait until there is work, woken once per burst rather than once per item.
/// </summary>
internal sealed class WorkQueue<T>
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<T> _items = new();
    private readonly SemaphoreSlim _signal = new(0);
    private int _signalled;
    private volatile bool _completed;

    /// <summary>Queues <paramref name="item"/>; false once <see cref="Complete"/> has been called.</summary>
    public bool TryAdd(T item)
    {
        if (_completed) return false;
        _items.Enqueue(item);
        if (Interlocked.Exchange(ref _signalled, 1) == 0) _signal.Release();
        return true;
    }

    public bool TryTake(out T item) => _items.TryDequeue(out item!);

    /// <summary>Blocks until something is queued; false once completed and drained.</summary>
    public bool WaitForWork()
    {
        while (true)
        {
            // Reset before looking: an item queued after the look signals again.
            Volatile.Write(ref _signalled, 0);
            if (!_items.IsEmpty) return true;
            if (_completed) return false;
            _signal.Wait();
        }
    }

    public void Complete()
    {
        _completed = true;
        _signal.Release();
    }
}
