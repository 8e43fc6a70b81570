using System.Net.Sockets;
using System.Text;

namespace Kumo.Agent.Qemu;

/// <summary>
/// The host end of the guest's kumo.ready virtio-serial port. The guest writes KUMO_READY at every boot (its write
/// blocks until a host end connects) and answers "ping" with KUMO_READY, so an agent that restarts can ask again.
/// "poweroff" asks the guest to sync and power off cleanly. The socket reaching EOF means QEMU exited.
/// </summary>
public sealed class ReadyChannel : IAsyncDisposable
{
    public const string ReadyLine = "KUMO_READY";

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;

    private ReadyChannel(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(_stream, Encoding.ASCII);
    }

    public static async Task<ReadyChannel> ConnectAsync(string socketPath, CancellationToken ct) =>
        new(await UnixSockets.ConnectAsync(socketPath, ct));

    public Task SendAsync(string line, CancellationToken ct) =>
        _stream.WriteAsync(Encoding.ASCII.GetBytes(line + "\n"), ct).AsTask();

    /// <summary>Next line from the guest, or null when QEMU closed the socket (it exited).</summary>
    public async Task<string?> ReadLineAsync(CancellationToken ct)
    {
        var line = await _reader.ReadLineAsync(ct);
        return line?.Trim();
    }

    public async ValueTask DisposeAsync()
    {
        _reader.Dispose();
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}
