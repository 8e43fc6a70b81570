using System.Globalization;
using System.Net.WebSockets;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>
    /// Hands a container's log (stdout and stderr as the engine kept them, interleaved) to <paramref name="write"/> as it
    /// arrives. With <paramref name="follow"/> it keeps going until the container ends or the token is cancelled.
    /// </summary>
    public async Task CopyContainerLogsAsync(string name, bool follow, int? tail, Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> write,
        CancellationToken cancellationToken = default)
    {
        var query = (follow ? "&follow=true" : "") + (tail is { } t ? $"&tail={t.ToString(CultureInfo.InvariantCulture)}" : "");
        var path = InProject($"api/v1/instances/{Escape(name)}/logs" + (query.Length > 0 ? "?" + query[1..] : ""));
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            var buffer = new byte[16 * 1024];
            int n;
            while ((n = await body.ReadAsync(buffer, cancellationToken)) > 0)
                await write(buffer.AsMemory(0, n), cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
        {
            throw KumoApiException.Failed($"the log stream from {BaseAddress} broke: {e.Message}", e);
        }
    }

    /// <summary>
    /// Runs a command in a running container. The WebSocket carries binary messages that start with a stream byte
    /// (0 stdin to kumod; 1 stdout, 2 stderr from it) and JSON text messages: <c>{"exitCode":N}</c> when the command
    /// ended, <c>{"notice":"..."}</c>, <c>{"error":"..."}</c> from kumod; <c>{"closeStdin":true}</c> to it.
    /// </summary>
    public Task<WebSocket> OpenContainerExecAsync(string name, IReadOnlyList<string> command, bool stdin, bool tty, CancellationToken cancellationToken = default)
    {
        var query = string.Join("&", command.Select(c => "command=" + Uri.EscapeDataString(c)))
            + (stdin ? "&stdin=true" : "") + (tty ? "&tty=true" : "");
        return OpenWebSocketAsync(InProject($"api/v1/instances/{Escape(name)}/exec?{query}"), "exec", cancellationToken);
    }

    /// <summary>The container's main process: its stdin (when it was started with -i) and its output, framed as for exec.</summary>
    public Task<WebSocket> OpenContainerAttachAsync(string name, CancellationToken cancellationToken = default) =>
        OpenWebSocketAsync(InProject($"api/v1/instances/{Escape(name)}/attach"), "attach", cancellationToken);
}
