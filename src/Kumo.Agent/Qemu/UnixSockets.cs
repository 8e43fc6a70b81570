using System.Net.Sockets;

namespace Kumo.Agent.Qemu;

/// <summary>Connecting to the Unix sockets QEMU serves (QMP, readiness, console).</summary>
internal static class UnixSockets
{
    /// <summary>A connected stream socket; nothing is left open when the connect fails.</summary>
    public static async Task<Socket> ConnectAsync(string path, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
