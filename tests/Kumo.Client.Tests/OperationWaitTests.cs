using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Client.Tests;

public sealed class OperationWaitTests
{
    private const string Id = "01JOP1";

    [Fact]
    public async Task WatchOperation_YieldsEachEventAndStopsAtTheFinalOne()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapGet("/api/v1/operations/{id}/events", (HttpContext context) =>
            FakeKumod.WriteEventsAsync(context,
            [
                FakeKumod.Event(Id, OperationStatuses.Running, "placing"),
                FakeKumod.Event(Id, OperationStatuses.Running, "creating disk"),
                FakeKumod.Event(Id, OperationStatuses.Succeeded, "ready"),
                FakeKumod.Event(Id, OperationStatuses.Running, "never read"),
            ])));
        using var client = new KumoClient(kumod.Url);

        var messages = new List<string?>();
        await foreach (var ev in client.WatchOperationAsync(Id))
            messages.Add(ev.Message);

        Assert.Equal(["placing", "creating disk", "ready"], messages);
    }

    [Fact]
    public async Task WaitOperation_ReportsStreamProgressAndReturnsTheFinalOperation()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/operations/{id}/events", (HttpContext context) => FakeKumod.WriteEventsAsync(context,
            [
                FakeKumod.Event(Id, OperationStatuses.Running, "placing"),
                FakeKumod.Event(Id, OperationStatuses.Running, "booting (tcg)"),
                FakeKumod.Event(Id, OperationStatuses.Succeeded, "ready"),
            ]));
            app.MapGet("/api/v1/operations/{id}", (string id) => FakeKumod.Ok(FakeKumod.Operation(id, OperationStatuses.Succeeded, "ready")));
        });
        using var client = new KumoClient(kumod.Url);
        var seen = new List<string?>();

        var final = await client.WaitOperationAsync(Id, new Recorder(seen));

        Assert.Equal(OperationStatuses.Succeeded, final.Status);
        Assert.Equal(["placing", "booting (tcg)", "ready"], seen);
    }

    [Fact]
    public async Task WaitOperation_WhenTheStreamDrops_PollsUntilTheStatusIsFinal()
    {
        var polls = 0;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/operations/{id}/events", async (HttpContext context) =>
            {
                await FakeKumod.WriteEventsAsync(context, [FakeKumod.Event(Id, OperationStatuses.Running, "placing")]);
                context.Abort();
            });
            app.MapGet("/api/v1/operations/{id}", (string id) => Interlocked.Increment(ref polls) switch
            {
                1 => FakeKumod.Ok(FakeKumod.Operation(id, OperationStatuses.Running, "placing")),
                2 => FakeKumod.Ok(FakeKumod.Operation(id, OperationStatuses.Running, "waiting for guest readiness")),
                _ => FakeKumod.Ok(FakeKumod.Operation(id, OperationStatuses.Succeeded, "ready")),
            });
        });
        using var client = new KumoClient(kumod.Url) { PollInterval = TimeSpan.FromMilliseconds(10) };
        var seen = new List<string?>();

        var final = await client.WaitOperationAsync(Id, new Recorder(seen));

        Assert.Equal(OperationStatuses.Succeeded, final.Status);
        Assert.Equal(3, polls);
        // "placing" comes from the stream or, if the reset discarded it, from the first poll; it is reported once.
        Assert.Equal(["placing", "waiting for guest readiness", "ready"], seen);
    }

    [Fact]
    public async Task WaitOperation_WithoutAnEventsEndpoint_Polls()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
            app.MapGet("/api/v1/operations/{id}", (string id) => FakeKumod.Ok(FakeKumod.Operation(id, OperationStatuses.Failed, error: "disk full"))));
        using var client = new KumoClient(kumod.Url);

        var final = await client.WaitOperationAsync(Id);

        Assert.Equal(OperationStatuses.Failed, final.Status);
        Assert.Equal("disk full", final.Error);
    }

    [Fact]
    public async Task WaitOperation_ForAnUnknownOperation_ThrowsNotFound()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
            app.MapGet("/api/v1/operations/{id}", (string id) => FakeKumod.Problem(404, ProblemTypes.NotFound, "Not found", $"operation {id} not found")));
        using var client = new KumoClient(kumod.Url);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.WaitOperationAsync("nope"));

        Assert.True(e.Is(ProblemTypes.NotFound));
    }

    private sealed class Recorder(List<string?> messages) : IProgress<OperationEvent>
    {
        public void Report(OperationEvent value) => messages.Add(value.Message);
    }
}
