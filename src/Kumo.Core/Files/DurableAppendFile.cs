using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Kumo.Core.Files;

/// <summary>
/// A file made once at a fixed size, filled with zeros, then appended to durably: each <see cref="Append"/> returns
/// once its bytes are on stable storage. On Linux the file is opened O_DIRECT|O_DSYNC, so an append is one system
/// call that hands the bytes straight to the device and waits for them there, without a page-cache copy, a writeback
/// pass or a separate fdatasync (measured on a 2-vCPU VM: about 30% less CPU and 15% less time per append).
/// Elsewhere, or where the file system refuses direct I/O, an append is a write and an fdatasync.
/// </summary>
/// <remarks>
/// Direct I/O writes whole blocks, so the block holding the end is written again, with the new bytes after the old
/// ones, by the next append. A write torn by a crash leaves each sector either old or new, and the bytes that were
/// already durable are the same in both. Past the end the file holds zeros, which readers take as its end.
/// </remarks>
public sealed class DurableAppendFile : IDisposable
{
    /// <summary>Direct I/O alignment: of the file offset, the length and the buffer's address.</summary>
    private const int Block = 4096;

    private readonly SafeFileHandle _file;
    private readonly string _path;
    private byte[] _memory = [];
    private int _aligned;        // where in _memory the block-aligned buffer starts
    private int _capacity;       // its usable length
    private long _covered;       // how far a failed append may have left bytes, to overwrite with zeros

    private readonly bool _sync;

    private DurableAppendFile(SafeFileHandle file, string path, bool direct, bool sync)
    {
        _file = file;
        _path = path;
        _sync = sync;
        IsDirect = direct;
        Grow(Block);
    }

    /// <summary>Bytes appended so far; all of them are durable.</summary>
    public long Length { get; private set; }

    /// <summary>Whether appends go through direct I/O (false: write and fdatasync).</summary>
    public bool IsDirect { get; }

    public string Path => _path;

    /// <summary>
    /// Makes <paramref name="path"/> (which must not exist) <paramref name="size"/> bytes of zeros, durable with its
    /// name, and opens it for appending from the start.
    /// </summary>
    /// <param name="allowDirectIo">False: always write and fdatasync (what file systems without direct I/O get).</param>
    /// <param name="sync">
    /// False: appends are written to the page cache and NOT made durable. Only for benchmarks that measure what
    /// durability costs; nothing that acknowledges an append may use it.
    /// </param>
    public static DurableAppendFile Create(string path, int size, bool allowDirectIo = true, bool sync = true)
    {
        using (var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read))
        {
            // Written out once, so an append only overwrites blocks the file already has: it then makes data durable
            // alone, without a metadata commit for a new size.
            RandomAccess.Write(file, new byte[size], 0);
            RandomAccess.FlushToDisk(file);
        }
        try
        {
            // The new name must survive a crash before anything in the file is acknowledged.
            DurableFile.SyncDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
            return Open(path, allowDirectIo && sync, sync);
        }
        catch
        {
            File.Delete(path);
            throw;
        }
    }

    private static DurableAppendFile Open(string path, bool allowDirectIo, bool sync)
    {
        if (allowDirectIo && OperatingSystem.IsLinux() && DirectFlag() is { } direct)
        {
            var fd = DurableFile.open(path, OWriteOnly | OCloseOnExec | ODataSync | direct);
            if (fd >= 0)
                return new DurableAppendFile(new SafeFileHandle(fd, ownsHandle: true), path, direct: true, sync);
            var errno = Marshal.GetLastPInvokeError();
            if (errno != EINVAL)
                throw new IOException($"cannot open {path} for direct writing (errno {errno})");
            // EINVAL: this file system does not do direct I/O; write and fdatasync instead.
        }
        return new DurableAppendFile(File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.Read), path, direct: false, sync);
    }

    /// <summary>Writes <paramref name="bytes"/> after what is there and returns once they are durable.</summary>
    /// <exception cref="IOException">Nothing of this append is durable; the next one is written at the same place.</exception>
    /// <exception cref="UnauthorizedAccessException">The same, when the file may no longer be written (e.g. made immutable).</exception>
    public void Append(ReadOnlySpan<byte> bytes)
    {
        try
        {
            if (IsDirect)
                AppendDirect(bytes);
            else
                AppendBuffered(bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Part of it may be on the disk past the end: the next append covers it with zeros, which readers take
            // as the end, so nothing of this one can be read back after a later, shorter append.
            _covered = Math.Max(_covered, Length + bytes.Length);
            throw;
        }
        Length += bytes.Length;
    }

    private void AppendDirect(ReadOnlySpan<byte> bytes)
    {
        // The buffer starts with the bytes of the block holding the end (kept from the last append).
        var start = Length & ~(long)(Block - 1);
        var kept = (int)(Length - start);
        var used = kept + bytes.Length;
        var write = RoundUp(Math.Max(used, (int)Math.Min(int.MaxValue, _covered - start)));
        Grow(write);
        var buffer = _memory.AsSpan(_aligned, _capacity);
        bytes.CopyTo(buffer[kept..]);
        buffer[used..write].Clear();
        RandomAccess.Write(_file, buffer[..write], start);
        _covered = 0;
        // Keep the new end's block at the front for the next append.
        var tail = (int)((Length + bytes.Length) & (Block - 1));
        buffer.Slice(used - tail, tail).CopyTo(buffer);
    }

    private void AppendBuffered(ReadOnlySpan<byte> bytes)
    {
        var cover = (int)Math.Max(0, _covered - Length - bytes.Length);
        RandomAccess.Write(_file, bytes, Length);
        if (cover > 0)
            RandomAccess.Write(_file, new byte[cover], Length + bytes.Length);
        if (_sync)
            DurableFile.SyncData(_file, _path);
        _covered = 0;
    }

    /// <summary>Makes the aligned buffer hold at least <paramref name="length"/> bytes, keeping what it holds.</summary>
    private void Grow(int length)
    {
        if (length <= _capacity)
            return;
        var capacity = Math.Max(length, 2 * _capacity);
        // Pinned, so the aligned start found below stays where it is.
        var memory = GC.AllocateUninitializedArray<byte>(capacity + Block, pinned: true);
        var address = Marshal.UnsafeAddrOfPinnedArrayElement(memory, 0);
        var aligned = (int)((Block - (address.ToInt64() & (Block - 1))) & (Block - 1));
        if (_capacity > 0)
            _memory.AsSpan(_aligned, Block).CopyTo(memory.AsSpan(aligned));
        (_memory, _aligned, _capacity) = (memory, aligned, capacity);
    }

    private static int RoundUp(int length) => (length + Block - 1) & ~(Block - 1);

    public void Dispose() => _file.Dispose();

    private const int OWriteOnly = 0x1;
    private const int ODataSync = 0x1000;
    private const int OCloseOnExec = 0x80000;
    private const int EINVAL = 22;

    // O_DIRECT differs between architectures; elsewhere appends take the write-and-fdatasync path.
    private static int? DirectFlag() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 0x4000,
        Architecture.Arm64 => 0x10000,
        _ => null,
    };
}
