using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Kumo.Bench;

/// <summary>An operation event as the client saw it: when it arrived (ms after the request started) and what it said.</summary>
internal sealed record SeenEvent(double AtMs, string Status, string? Message);

/// <summary>The few REST calls the process benchmarks make against kumod.</summary>
internal static class KumoClient
{
    /// <summary>POSTs an instance and follows its operation's SSE stream until a final status; returns every event seen.</summary>
    public static Task<List<SeenEvent>> CreateAndWaitReadyAsync(HttpClient http, string name, CancellationToken ct) =>
        PostAndFollowAsync(http, "/api/v1/instances", new { name }, $"create {name}", ct);

    /// <summary>As above, with a full POST body (network, memory, ...).</summary>
    public static Task<List<SeenEvent>> CreateAndWaitReadyAsync(HttpClient http, string name, object body, CancellationToken ct) =>
        PostAndFollowAsync(http, "/api/v1/instances", body, $"create {name}", ct);

    /// <summary>
    /// POSTs <paramref name="body"/> (202 and an operation expected) and follows the operation's SSE stream until a
    /// final status; returns every event seen, timed from the POST.
    /// </summary>
    public static async Task<List<SeenEvent>> PostAndFollowAsync(HttpClient http, string path, object body, string what, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        using var post = await http.PostAsJsonAsync(path, body, ct);
        if (post.StatusCode != HttpStatusCode.Accepted)
            throw new InvalidOperationException($"{what}: {(int)post.StatusCode} {await post.Content.ReadAsStringAsync(ct)}");
        return await FollowAsync(http, await post.Content.ReadFromJsonAsync<JsonElement>(ct), start, what, ct);
    }

    /// <summary>Follows an operation's SSE stream until a final status (a failure throws).</summary>
    public static async Task<List<SeenEvent>> FollowAsync(HttpClient http, JsonElement op, long start, string what, CancellationToken ct)
    {
        var events = new List<SeenEvent> { new(Ms(start), op.GetProperty("status").GetString()!, "POST answered") };
        var id = op.GetProperty("id").GetString();
        using var stream = await http.GetAsync($"/api/v1/operations/{id}/events", HttpCompletionOption.ResponseHeadersRead, ct);
        stream.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync(ct));
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            var e = JsonDocument.Parse(line[6..]).RootElement;
            var seen = new SeenEvent(Ms(start), e.GetProperty("status").GetString()!, e.TryGetProperty("message", out var m) ? m.GetString() : null);
            events.Add(seen);
            if (seen.Status == "succeeded") return events;
            if (seen.Status == "failed") throw new InvalidOperationException($"{what} failed: {seen.Message}");
        }
        throw new InvalidOperationException($"{what}: event stream ended without a final status");
    }

    /// <summary>Deletes with force and waits until GET answers 404.</summary>
    public static async Task DeleteAndWaitGoneAsync(HttpClient http, string name, CancellationToken ct)
    {
        using (var del = await http.DeleteAsync($"/api/v1/instances/{name}?force=true", ct))
        {
            if (!del.IsSuccessStatusCode)
                throw new InvalidOperationException($"delete {name}: {(int)del.StatusCode} {await del.Content.ReadAsStringAsync(ct)}");
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            using var get = await http.GetAsync($"/api/v1/instances/{name}", ct);
            if (get.StatusCode == HttpStatusCode.NotFound) return;
            await Task.Delay(50, ct);
        }
        throw new TimeoutException($"instance {name} was not gone 60 s after delete");
    }

    public static double Ms(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalMilliseconds;
}
