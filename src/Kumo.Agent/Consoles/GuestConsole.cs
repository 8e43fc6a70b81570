using System.Net.Sockets;
using System.Threading.Channels;
using Kumo.Agent.Qemu;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Consoles;

/// <summary>Where one guest's console lives on disk.</summary>
/// <param name="GuestSocket">The hypervisor's end of the serial port: a socket that serves one client at a time.</param>
/// <param name="LocalSocket">The agent's own socket on the node, where any number of local clients may attach.</param>
/// <param name="Log">Recent output, kept across agent restarts and capped in size.</param>
public sealed record ConsolePaths(string GuestSocket, string LocalSocket, string Log);

/// <summary>One attached client of a console: a remote session (through kumod) or a local socket client on the node.</summary>
public sealed class ConsoleViewer
{
    // A viewer that cannot keep up loses its oldest undelivered output rather than holding memory or the guest back.
    private readonly Channel<byte[]> _output = Channel.CreateBounded<byte[]>(
        new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });

    internal ConsoleViewer(bool local) => Local = local;

    /// <summary>Local clients are root on the node and may always type; remote ones follow the first-writer rule.</summary>
    public bool Local { get; }

    /// <summary>Guest output from the moment the viewer joined; completes when the console closes.</summary>
    public ChannelReader<byte[]> Output => _output.Reader;

    internal void Offer(byte[] chunk) => _output.Writer.TryWrite(chunk);

    internal void Complete() => _output.Writer.TryComplete();
}

/// <summary>
/// The agent's side of one guest's serial console. QEMU serves the serial port on a socket that accepts a single
/// client; the agent is that client, and fans the output out to any number of viewers, keeps the most recent
/// <see cref="RingBytes"/> in memory and appends everything to a log capped at <see cref="LogCapBytes"/>. A restarted
/// agent loads the ring from the log and attaches to QEMU again, so recent output survives it (output the guest
/// printed while no agent was attached is lost: QEMU drops serial output nobody reads).
/// </summary>
/// <remarks>
/// Typing: local clients always may. Of the remote viewers, the first one to send input holds the keyboard until it
/// leaves; input from the others is refused (<see cref="InputAsync"/> returns false) so two people never type into
/// one shell at once.
/// </remarks>
public sealed partial class GuestConsole : IAsyncDisposable
{
    public const int RingBytes = 64 * 1024;
    public const long LogCapBytes = 1024 * 1024;

    /// <summary>What a rotation keeps, so the log is not rewritten on every write once it is full.</summary>
    public const long LogKeepBytes = 512 * 1024;

    private readonly object _lock = new();
    private readonly ConsoleRing _ring = new(RingBytes);
    private readonly List<ConsoleViewer> _viewers = [];
    private readonly SemaphoreSlim _guestWrite = new(1, 1);
    private readonly CancellationTokenSource _closed = new();
    private readonly ConsolePaths _paths;
    private readonly ILogger _logger;
    private readonly Socket _listener;
    private FileStream? _log;
    private Socket? _guest;
    private int _guestPid;
    private ConsoleViewer? _writer;

    private GuestConsole(string id, ConsolePaths paths, ILogger logger)
    {
        Id = id;
        _paths = paths;
        _logger = logger;
        _ring.Write(ReadTail(paths.Log, RingBytes));
        _log = OpenLog();
        // The local socket is the agent's: whatever a previous agent left there is stale.
        File.Delete(paths.LocalSocket);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            _listener.Bind(new UnixDomainSocketEndPoint(paths.LocalSocket));
            _listener.Listen(16);
        }
        catch
        {
            _listener.Dispose();
            _log?.Dispose();
            throw;
        }
        _ = AcceptLocalAsync(_closed.Token);
    }

    public string Id { get; }

    /// <summary>Whether the console is connected to a running guest now.</summary>
    public bool Attached
    {
        get
        {
            lock (_lock) return _guest is not null;
        }
    }

    public static GuestConsole Open(string id, ConsolePaths paths, ILogger logger) => new(id, paths, logger);

    /// <summary>Connects to the serial port of the guest process <paramref name="pid"/>, unless already connected to it.</summary>
    public void Attach(int pid)
    {
        lock (_lock)
        {
            if (_guestPid == pid || _closed.IsCancellationRequested) return;
            _guestPid = pid;
        }
        _ = GuestLoopAsync(pid, _closed.Token);
    }

    /// <summary>The most recent output (up to <see cref="RingBytes"/>).</summary>
    public byte[] Recent()
    {
        lock (_lock) return _ring.ToArray();
    }

    public ConsoleViewer Join(bool local)
    {
        var viewer = new ConsoleViewer(local);
        lock (_lock)
        {
            if (_closed.IsCancellationRequested) viewer.Complete();
            else _viewers.Add(viewer);
        }
        return viewer;
    }

    public void Leave(ConsoleViewer viewer)
    {
        lock (_lock)
        {
            _viewers.Remove(viewer);
            if (_writer == viewer) _writer = null;
        }
        viewer.Complete();
    }

    /// <summary>Types into the guest. False when another remote viewer holds the keyboard (the input is dropped).</summary>
    public async Task<bool> InputAsync(ConsoleViewer viewer, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        Socket? guest;
        lock (_lock)
        {
            if (!viewer.Local)
            {
                _writer ??= viewer;
                if (_writer != viewer) return false;
            }
            guest = _guest;
        }
        // Nothing runs to type into (the guest is off or booting again): the keys are lost, as on a real serial line.
        if (guest is null) return true;
        await _guestWrite.WaitAsync(ct);
        try
        {
            await guest.SendAsync(data, SocketFlags.None, ct);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The guest went away mid-write; its loop notices the EOF.
        }
        finally
        {
            _guestWrite.Release();
        }
        return true;
    }

    private async Task GuestLoopAsync(int pid, CancellationToken ct)
    {
        Socket? socket = null;
        try
        {
            // Right after a launch QEMU may not be listening yet; it is by the time -daemonize returns, but an adopted
            // guest can be mid-exit. A few tries, then give up until the worker attaches again.
            for (var attempt = 0; socket is null; attempt++)
            {
                try
                {
                    socket = await UnixSockets.ConnectAsync(_paths.GuestSocket, ct);
                }
                catch (SocketException) when (attempt < 50 && ProcessRunner.IsAlive(pid))
                {
                    await Task.Delay(100, ct);
                }
            }
            lock (_lock)
            {
                if (_guestPid != pid) return;
                _guest = socket;
            }
            LogAttached(Id, pid);
            var buffer = new byte[16 * 1024];
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
                if (n == 0) break;
                Publish(buffer.AsSpan(0, n));
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            if (!ct.IsCancellationRequested) LogAttachFailed(Id, pid, e.Message);
        }
        finally
        {
            lock (_lock)
            {
                if (_guest == socket) _guest = null;
                if (_guestPid == pid) _guestPid = 0;
            }
            socket?.Dispose();
        }
    }

    private void Publish(ReadOnlySpan<byte> data)
    {
        var chunk = data.ToArray();
        lock (_lock)
        {
            _ring.Write(chunk);
            foreach (var v in _viewers) v.Offer(chunk);
            AppendLog(chunk);
        }
    }

    /// <remarks>Called under the lock: appends are ordered with the ring.</remarks>
    private void AppendLog(byte[] chunk)
    {
        if (_log is null) return;
        try
        {
            if (_log.Length + chunk.Length > LogCapBytes)
            {
                _log.Dispose();
                _log = null;
                var tail = ReadTail(_paths.Log, LogKeepBytes);
                var tmp = _paths.Log + ".tmp";
                File.WriteAllBytes(tmp, tail);
                File.Move(tmp, _paths.Log, overwrite: true);
                _log = OpenLog();
                if (_log is null) return;
            }
            _log.Write(chunk);
            _log.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The instance directory is going away (delete): the log ends here.
            _log?.Dispose();
            _log = null;
        }
    }

    private FileStream? OpenLog()
    {
        try
        {
            return new FileStream(_paths.Log, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static byte[] ReadTail(string path, long bytes)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var n = (int)Math.Min(bytes, f.Length);
            f.Seek(-n, SeekOrigin.End);
            var result = new byte[n];
            f.ReadExactly(result);
            return result;
        }
        catch (FileNotFoundException)
        {
            return [];
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
    }

    private async Task AcceptLocalAsync(CancellationToken ct)
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptAsync(ct);
                _ = ServeLocalAsync(client, ct);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeLocalAsync(Socket client, CancellationToken ct)
    {
        var viewer = Join(local: true);
        using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var output = Task.Run(async () =>
        {
            try
            {
                await foreach (var chunk in viewer.Output.ReadAllAsync(done.Token))
                    await client.SendAsync(chunk, SocketFlags.None, done.Token);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }, CancellationToken.None);
        try
        {
            var buffer = new byte[4096];
            while (true)
            {
                var n = await client.ReceiveAsync(buffer, SocketFlags.None, ct);
                if (n == 0) break;
                await InputAsync(viewer, buffer.AsMemory(0, n), ct);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            Leave(viewer);
            await done.CancelAsync();
            await output;
            client.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_closed.IsCancellationRequested) return;
        await _closed.CancelAsync();
        _listener.Dispose();
        List<ConsoleViewer> viewers;
        lock (_lock)
        {
            viewers = [.. _viewers];
            _viewers.Clear();
            _guest?.Dispose();
            _guest = null;
            _log?.Dispose();
            _log = null;
        }
        foreach (var v in viewers) v.Complete();
    }

    [LoggerMessage(LogLevel.Debug, "console of {Id} attached to guest process {Pid}")]
    private partial void LogAttached(string id, int pid);

    [LoggerMessage(LogLevel.Information, "console of {Id} could not attach to guest process {Pid}: {Reason}")]
    private partial void LogAttachFailed(string id, int pid, string reason);
}
