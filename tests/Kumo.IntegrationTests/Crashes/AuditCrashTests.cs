using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Kumo.IntegrationTests.Crashes;

/// <summary>
/// kill -9 of kumod while it answers a stream of requests: every request that got an answer must be in the audit log
/// after the restart (its entry was durable in the journal before the answer), and the chain must verify.
/// </summary>
[Trait("Category", "Slow")]
public sealed class AuditCrashTests(ITestOutputHelper output)
{
    [Fact]
    public async Task KillingKumodUnderLoad_KeepsTheEntryOfEveryAnsweredRequest_AndTheChainVerifies()
    {
        await using var env = await KumoEnvironment.StartAsync();
        var answered = new ConcurrentBag<string>();
        var sent = 0;
        var replays = 0;
        for (var round = 0; round < 3; round++)
        {
            using var stop = new CancellationTokenSource();
            var callers = Enumerable.Range(0, 8).Select(async caller =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var tag = $"r{round}c{caller}n{Interlocked.Increment(ref sent)}";
                    try
                    {
                        using var response = await env.Api.Http.GetAsync($"/api/v1/nodes?tag={tag}");
                        if (response.StatusCode == HttpStatusCode.OK)
                            answered.Add(tag);
                    }
                    catch (HttpRequestException)
                    {
                        return; // kumod is gone
                    }
                }
            }).ToList();
            await ApiClient.EventuallyAsync(() => Task.FromResult(answered.Count(t => t.StartsWith($"r{round}c", StringComparison.Ordinal))),
                n => n >= 200, TimeSpan.FromSeconds(60), $"200 answered reads in round {round}");
            env.Server!.Crash();
            await stop.CancelAsync();
            await Task.WhenAll(callers);
            await env.StartServerAsync();
            if (env.Server!.Log.Contains("from the journal", StringComparison.Ordinal))
                replays++;
        }

        var export = await env.Api.Http.GetStringAsync("/api/v1/audit/export");
        var entries = export.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => System.Text.Json.JsonSerializer.Deserialize<AuditEntry>(line, ApiClient.Json)!).ToList();
        var recorded = entries.Select(e => e.Target).Where(t => t.Contains("?tag=", StringComparison.Ordinal))
            .Select(t => t[(t.IndexOf("?tag=", StringComparison.Ordinal) + 5)..]).ToHashSet();
        var missing = answered.Where(t => !recorded.Contains(t)).ToList();
        output.WriteLine($"{sent} reads sent, {answered.Count} answered, {recorded.Count} recorded, {missing.Count} answered but missing; "
            + $"{replays} of 3 restarts copied entries from the journal into the table");
        Assert.Empty(missing);
        Assert.Equal(recorded.Count, entries.Count(e => e.Target.Contains("?tag=", StringComparison.Ordinal))); // none twice
        var verification = await env.Api.Http.GetFromJsonAsync<AuditVerification>("/api/v1/audit/verify", ApiClient.Json);
        Assert.True(verification!.Ok, verification.Reason);
    }
}
