using System.Runtime.InteropServices;

namespace Kumo.Core.Files;

/// <summary>Small files replaced atomically and durably: a crash leaves either the old content or the new, never a mix.</summary>
public static class DurableFile
{
    /// <summary>Writes a temporary file beside <paramref name="path"/>, fsyncs it, renames it over the target and fsyncs the directory.</summary>
    public static void Write(string path, ReadOnlySpan<byte> content, UnixFileMode mode)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        // A unique temporary name: two writers of the same file never share (or delete) each other's temp file.
        var temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = mode;
        try
        {
            using (var file = new FileStream(temp, options))
            {
                file.Write(content);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }
        SyncDirectory(directory);
    }

    /// <summary>The same for text (UTF-8), e.g. PEM certificates and keys.</summary>
    public static void Write(string path, string content, UnixFileMode mode)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        Write(path, System.Text.Encoding.UTF8.GetBytes(content), mode);
    }

    /// <summary>Makes a rename in <paramref name="directory"/> durable (POSIX keeps directory entries in the directory's own data).</summary>
    public static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows()) return;
        var fd = open(directory, 0 /* O_RDONLY */);
        if (fd < 0)
            throw new IOException($"cannot open {directory} to sync it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (fsync(fd) != 0)
                throw new IOException($"fsync of {directory} failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            _ = close(fd);
        }
    }

    /// <summary>
    /// Makes what was written to <paramref name="file"/> durable with fdatasync: the data and the size, not the
    /// timestamps, which is all an append-only log needs and one journal commit cheaper than fsync.
    /// </summary>
    public static void SyncData(Microsoft.Win32.SafeHandles.SafeFileHandle file, string path)
    {
        if (OperatingSystem.IsWindows())
        {
            RandomAccess.FlushToDisk(file);
            return;
        }
        var added = false;
        file.DangerousAddRef(ref added);
        try
        {
            if (fdatasync(file.DangerousGetHandle().ToInt32()) != 0)
                throw new IOException($"fdatasync of {path} failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            if (added) file.DangerousRelease();
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int fdatasync(int fd);

    /// <summary>open(2), for what <see cref="FileStream"/> cannot ask for (a directory, O_DIRECT).</summary>
    [DllImport("libc", SetLastError = true)]
    internal static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern int fsync(int fd);

    [DllImport("libc")]
    private static extern int close(int fd);
}
