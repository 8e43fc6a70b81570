using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Kumo.Client.Trust;
using Kumo.Core;
using Kumo.Core.Security;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>Thin REST helpers for tests; assertions stay in the tests. HTTPS trusts only the CA file given (kumod's STATE/pki/ca.crt).</summary>
public sealed class ApiClient(Uri baseUrl, string? caPath = null) : IDisposable
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public HttpClient Http { get; } = caPath is null
        ? new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(60) }
        : new HttpClient(new PinnedCaHandler(CaTrust.LoadPem(caPath))) { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(60) };

    /// <summary>A one-time join token for a new agent.</summary>
    public async Task<NodeToken> CreateNodeTokenAsync(string? ttl = null, CancellationToken ct = default)
    {
        using var r = await Http.PostAsJsonAsync("/api/v1/nodes/tokens", new NodeTokensPost { Ttl = ttl }, Json, ct);
        r.EnsureSuccessStatusCode();
        return (await r.Content.ReadFromJsonAsync<NodeToken>(Json, ct))!;
    }

    public async Task<(HttpStatusCode Status, Operation? Operation, Problem? Problem)> CreateAsync(object body, CancellationToken ct = default)
    {
        using var r = await Http.PostAsJsonAsync("/api/v1/instances", body, Json, ct);
        return await OperationOrProblemAsync(r, ct);
    }

    public async Task<(HttpStatusCode Status, Operation? Operation, Problem? Problem)> ActAsync(string name, string action, CancellationToken ct = default)
    {
        using var r = action == "delete"
            ? await Http.DeleteAsync($"/api/v1/instances/{name}", ct)
            : action == "force-delete"
                ? await Http.DeleteAsync($"/api/v1/instances/{name}?force=true", ct)
                : await Http.PostAsync($"/api/v1/instances/{name}/{action}", null, ct);
        return await OperationOrProblemAsync(r, ct);
    }

    private static async Task<(HttpStatusCode, Operation?, Problem?)> OperationOrProblemAsync(HttpResponseMessage r, CancellationToken ct)
    {
        if (r.IsSuccessStatusCode) return (r.StatusCode, await r.Content.ReadFromJsonAsync<Operation>(Json, ct), null);
        return (r.StatusCode, null, await r.Content.ReadFromJsonAsync<Problem>(Json, ct));
    }

    public async Task<Instance?> GetAsync(string name, CancellationToken ct = default)
    {
        using var r = await Http.GetAsync($"/api/v1/instances/{name}", ct);
        if (r.StatusCode == HttpStatusCode.NotFound) return null;
        r.EnsureSuccessStatusCode();
        return await r.Content.ReadFromJsonAsync<Instance>(Json, ct);
    }

    public async Task<List<Instance>> ListAsync(CancellationToken ct = default) =>
        await Http.GetFromJsonAsync<List<Instance>>("/api/v1/instances", Json, ct) ?? [];

    public async Task<List<Node>> NodesAsync(CancellationToken ct = default) =>
        await Http.GetFromJsonAsync<List<Node>>("/api/v1/nodes", Json, ct) ?? [];

    /// <summary>Polls the operation until it is final; throws with the last state at the deadline.</summary>
    public async Task<Operation> WaitAsync(Operation op, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(120));
        while (true)
        {
            var current = await Http.GetFromJsonAsync<Operation>($"/api/v1/operations/{op.Id}", Json) ?? op;
            if (OperationStatuses.IsFinal(current.Status)) return current;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"operation {op.Kind} {op.Target} still {current.Status}: {current.Message}");
            await Task.Delay(100);
        }
    }

    /// <summary>Polls until <paramref name="condition"/> holds; returns the last value.</summary>
    public static async Task<T> EventuallyAsync<T>(Func<Task<T>> read, Func<T, bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var value = await read();
            if (condition(value)) return value;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what}; last value: {JsonSerializer.Serialize(value, Json)}");
            await Task.Delay(100);
        }
    }

    public void Dispose() => Http.Dispose();
}
