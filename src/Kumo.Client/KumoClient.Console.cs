using System.Net.WebSockets;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>
    /// Opens a VM's serial console as a WebSocket: binary messages are console bytes both ways, text messages from
    /// kumod are notices for the person (e.g. that someone else is typing). A refused handshake becomes the same
    /// <see cref="KumoApiException"/> the REST API gives for that VM (not found, forbidden, not running, node away).
    /// </summary>
    public Task<WebSocket> OpenConsoleAsync(string name, CancellationToken cancellationToken = default) =>
        OpenWebSocketAsync(InProject($"api/v1/instances/{Escape(name)}/console"), "console", cancellationToken);

    private async Task<WebSocket> OpenWebSocketAsync(string path, string what, CancellationToken cancellationToken)
    {
        var http = new Uri(BaseAddress, path);
        var uri = new UriBuilder(http) { Scheme = http.Scheme == Uri.UriSchemeHttps ? "wss" : "ws" }.Uri;
        var ws = new ClientWebSocket();
        if (!string.IsNullOrEmpty(Token))
            ws.Options.SetRequestHeader("Authorization", "Bearer " + Token);
        try
        {
            // Through this client's own handler, so the pinned CA is trusted exactly as for REST calls.
            await ws.ConnectAsync(uri, _http, cancellationToken);
            return ws;
        }
        catch (WebSocketException e)
        {
            ws.Dispose();
            // kumod checks everything a WebSocket would meet before it looks for the upgrade, so a plain GET answers
            // with the reason as problem+json (or with websocket-required when the refusal was elsewhere).
            await SendAsync(() => new HttpRequestMessage(HttpMethod.Get, path), static (_, _) => Task.FromResult(true), cancellationToken);
            throw KumoApiException.Failed($"kumod refused the {what} WebSocket: {e.Message}", e);
        }
        catch (HttpRequestException e) when (IsConnectFailure(e))
        {
            ws.Dispose();
            throw KumoApiException.Unreachable(BaseAddress, e);
        }
    }

    /// <summary>A VM's recent console output (what the node keeps: the last 64 KiB), also for a stopped VM.</summary>
    public Task<byte[]> GetConsoleLogAsync(string name, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Get, InProject($"api/v1/instances/{Escape(name)}/console/log")),
            static (response, ct) => response.Content.ReadAsByteArrayAsync(ct), cancellationToken);
}
