using System.Net.Sockets;
using System.Text;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>Types commands into a guest's serial console socket and reads the answer.</summary>
public static class SerialConsole
{
    /// <summary>Runs a shell command in the guest and returns what it printed.</summary>
    public static async Task<string> RunAsync(string socketPath, string command, TimeSpan timeout)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        await using var stream = new NetworkStream(socket);
        var tag = Random.Shared.Next(100_000, 999_999);
        // The end marker is computed by the shell, so the echoed command line never contains it literally.
        var line = $"\n{command}; echo KUMO-END-$(( {tag} + 1 ))\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(line));
        var end = $"KUMO-END-{tag + 1}";
        var buffer = new StringBuilder();
        var bytes = new byte[4096];
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            var n = await stream.ReadAsync(bytes, cts.Token);
            if (n == 0) throw new IOException("console closed");
            buffer.Append(Encoding.ASCII.GetString(bytes, 0, n));
            var text = buffer.ToString();
            var at = text.IndexOf(end, StringComparison.Ordinal);
            if (at >= 0)
            {
                // The output starts after the echoed command line: the last "KUMO-END" before the marker itself
                // (a busy guest's line editor may redraw the echo with control characters inside "KUMO-END-$((").
                var cmdEcho = at == 0 ? -1 : text.LastIndexOf("KUMO-END", at - 1, StringComparison.Ordinal);
                var start = cmdEcho >= 0 ? text.IndexOf('\n', cmdEcho) + 1 : 0;
                return start <= 0 || start > at ? text[..at] : text[start..at];
            }
        }
    }
}
