using System.Net.WebSockets;
using System.Text;
using System.Text.RegularExpressions;
using Kumo.Client.Trust;
using Kumo.Core.Security;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>A viewer of a VM's console over kumod's WebSocket, as a test drives it.</summary>
public sealed class ConsoleSocket : IAsyncDisposable
{
    private readonly ClientWebSocket _ws;
    private readonly HttpMessageInvoker _invoker;
    private readonly StringBuilder _output = new();
    private readonly List<string> _notices = [];
    private readonly Task _reader;
    private readonly SemaphoreSlim _changed = new(0);

    private ConsoleSocket(ClientWebSocket ws, HttpMessageInvoker invoker)
    {
        _ws = ws;
        _invoker = invoker;
        _reader = Task.Run(ReadAsync);
    }

    /// <summary>HTTP status of the handshake when it was refused (the WebSocket equivalent of a problem answer).</summary>
    public static async Task<(ConsoleSocket? Socket, int Status)> TryConnectAsync(KumoEnvironment env, string vm, string token, string? project = null)
    {
        var invoker = new HttpMessageInvoker(new PinnedCaHandler(CaTrust.LoadPem(env.CaPath)));
        var ws = new ClientWebSocket();
        ws.Options.CollectHttpResponseDetails = true;
        ws.Options.SetRequestHeader("Authorization", "Bearer " + token);
        var query = project is null ? "" : "?project=" + project;
        try
        {
            await ws.ConnectAsync(new Uri($"wss://127.0.0.1:{env.ApiPort}/api/v1/instances/{vm}/console{query}"), invoker, CancellationToken.None);
            return (new ConsoleSocket(ws, invoker), (int)ws.HttpStatusCode);
        }
        catch (WebSocketException)
        {
            var status = (int)ws.HttpStatusCode;
            ws.Dispose();
            invoker.Dispose();
            return (null, status);
        }
    }

    public static async Task<ConsoleSocket> ConnectAsync(KumoEnvironment env, string vm, string? token = null)
    {
        var (socket, status) = await TryConnectAsync(env, vm, token ?? env.Token!);
        return socket ?? throw new InvalidOperationException($"console handshake for {vm} refused with {status}\n{env.Diagnostics()}");
    }

    public Task TypeAsync(string text) => _ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Binary, true, CancellationToken.None);

    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    public IReadOnlyList<string> Notices
    {
        get
        {
            lock (_output) return [.. _notices];
        }
    }

    /// <summary>Waits until the output (since this viewer joined) matches; returns the match.</summary>
    public async Task<Match> WaitForAsync(Regex pattern, TimeSpan timeout) =>
        await WaitAsync(() => pattern.Match(Output) is { Success: true } m ? m : null, timeout, $"console output matching {pattern}");

    public async Task<string> WaitForNoticeAsync(TimeSpan timeout) =>
        await WaitAsync(() => Notices is { Count: > 0 } n ? n[0] : null, timeout, "a notice from kumod");

    private async Task<T> WaitAsync<T>(Func<T?> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (probe() is { } found) return found;
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException($"timed out waiting for {what}; output so far:\n{Output}");
            await _changed.WaitAsync(left);
        }
    }

    private async Task ReadAsync()
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var r = await _ws.ReceiveAsync(buffer, CancellationToken.None);
                if (r.MessageType == WebSocketMessageType.Close) break;
                var text = Encoding.UTF8.GetString(buffer, 0, r.Count);
                lock (_output)
                {
                    if (r.MessageType == WebSocketMessageType.Text) _notices.Add(text);
                    else _output.Append(text);
                }
                _changed.Release();
            }
        }
        catch (WebSocketException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_ws.State == WebSocketState.Open)
                await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "test done", CancellationToken.None);
            await _reader.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is WebSocketException or TimeoutException)
        {
        }
        _ws.Dispose();
        _invoker.Dispose();
    }
}
