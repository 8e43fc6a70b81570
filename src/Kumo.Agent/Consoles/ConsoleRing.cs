namespace Kumo.Agent.Consoles;

/// <summary>The most recent output of a console, up to a fixed size; older bytes fall off the front.</summary>
public sealed class ConsoleRing(int capacity)
{
    private readonly byte[] _buffer = new byte[capacity];
    private int _start;
    private int _count;

    public int Capacity => _buffer.Length;

    public int Count => _count;

    public void Write(ReadOnlySpan<byte> data)
    {
        // Only the tail of a write larger than the ring can survive it.
        if (data.Length >= _buffer.Length)
        {
            data[^_buffer.Length..].CopyTo(_buffer);
            _start = 0;
            _count = _buffer.Length;
            return;
        }
        var end = (_start + _count) % _buffer.Length;
        var first = Math.Min(data.Length, _buffer.Length - end);
        data[..first].CopyTo(_buffer.AsSpan(end));
        data[first..].CopyTo(_buffer);
        var overflow = _count + data.Length - _buffer.Length;
        if (overflow > 0)
        {
            _start = (_start + overflow) % _buffer.Length;
            _count = _buffer.Length;
        }
        else
        {
            _count += data.Length;
        }
    }

    public byte[] ToArray()
    {
        var result = new byte[_count];
        var first = Math.Min(_count, _buffer.Length - _start);
        _buffer.AsSpan(_start, first).CopyTo(result);
        _buffer.AsSpan(0, _count - first).CopyTo(result.AsSpan(first));
        return result;
    }
}
