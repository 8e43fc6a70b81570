using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Kumo.Agent.Qemu;

public sealed class QmpException(string message) : Exception(message);

/// <summary>
/// A minimal QMP client over a Unix socket: greeting, capabilities negotiation, then one command at a time.
/// Asynchronous events interleaved with replies are skipped.
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;
    private readonly SemaphoreSlim _gate = new(1, 1);

    private QmpClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(_stream, Encoding.UTF8);
    }

    public static async Task<QmpClient> ConnectAsync(string socketPath, CancellationToken ct)
    {
        var socket = await UnixSockets.ConnectAsync(socketPath, ct);
        try
        {
            var client = new QmpClient(socket);
            var greeting = await client.ReadMessageAsync(ct);
            if (greeting["QMP"] is null) throw new QmpException("the socket did not greet with QMP");
            await client.ExecuteAsync("qmp_capabilities", null, ct);
            return client;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            var request = new JsonObject { ["execute"] = command };
            if (arguments is not null) request["arguments"] = arguments;
            var bytes = Encoding.UTF8.GetBytes(request.ToJsonString() + "\n");
            await _stream.WriteAsync(bytes, ct);
            while (true)
            {
                var msg = await ReadMessageAsync(ct);
                if (msg["event"] is not null) continue;
                if (msg["error"] is JsonObject error)
                    throw new QmpException($"{command}: {error["desc"]?.GetValue<string>() ?? error.ToJsonString()}");
                return msg["return"];
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The VM run state, e.g. "running", "paused", "shutdown".</summary>
    public async Task<string> QueryStatusAsync(CancellationToken ct) =>
        (await ExecuteAsync("query-status", null, ct))?["status"]?.GetValue<string>() ?? "unknown";

    private async Task<JsonObject> ReadMessageAsync(CancellationToken ct)
    {
        var line = await _reader.ReadLineAsync(ct) ?? throw new QmpException("QMP connection closed");
        return JsonNode.Parse(line) as JsonObject ?? throw new QmpException($"unexpected QMP message: {line}");
    }

    public async ValueTask DisposeAsync()
    {
        _reader.Dispose();
        await _stream.DisposeAsync();
        _socket.Dispose();
        _gate.Dispose();
    }
}
