using System.Text.Json;
using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Cli.Tests.Commands;

public sealed class VmCommandTests
{
    private const string OpId = "01JOPCREATE";

    /// <summary>kumod accepting a create, with the given events endpoint and operation poll answers.</summary>
    private static Task<FakeKumod> StartCreateAsync(Func<HttpContext, Task> events, Func<int, Operation> poll,
        Action<InstancesPost>? onPost = null) => FakeKumod.StartAsync(app =>
    {
        var polls = 0;
        app.MapPost("/api/v1/instances", (InstancesPost post) =>
        {
            onPost?.Invoke(post);
            return Results.Json(FakeKumod.Operation(OpId, OperationStatuses.Pending), FakeKumod.Json, statusCode: 202);
        });
        app.MapGet("/api/v1/operations/{id}/events", events);
        app.MapGet("/api/v1/operations/{id}", () => FakeKumod.Ok(poll(Interlocked.Increment(ref polls))));
        app.MapGet("/api/v1/instances/{name}", (string name) => FakeKumod.Ok(FakeKumod.Instance(name)));
    });

    [Fact]
    public async Task Create_FollowsTheEventStreamToCompletion_PrintingEachStep()
    {
        InstancesPost? sent = null;
        await using var kumod = await StartCreateAsync(
            context => FakeKumod.WriteEventsAsync(context,
            [
                FakeKumod.Event(OpId, OperationStatuses.Running, "placing"),
                FakeKumod.Event(OpId, OperationStatuses.Running, "creating disk"),
                FakeKumod.Event(OpId, OperationStatuses.Running, "booting (tcg)"),
                FakeKumod.Event(OpId, OperationStatuses.Running, "waiting for guest readiness"),
                FakeKumod.Event(OpId, OperationStatuses.Succeeded, "ready"),
            ]),
            _ => FakeKumod.Operation(OpId, OperationStatuses.Succeeded, "ready"),
            post => sent = post);

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web", "--image", "tiny", "--cpus", "1", "--memory", "256M", "--disk", "1G");

        Assert.Equal(0, result.ExitCode);
        var lines = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(
            ["create web: placing", "create web: creating disk", "create web: booting (tcg)", "create web: waiting for guest readiness", "create web: ready"],
            lines[..^1].Select(WithoutClock));
        Assert.Equal("vm web is running on node-1", lines[^1]);
        Assert.Equal(new InstancesPost { Name = "web", Type = "vm", Image = "tiny", Cpus = 1, Memory = "256M", Disk = "1G" }, sent);
        Assert.Equal("", result.Err);
    }

    [Fact]
    public async Task Create_WhenTheEventStreamEndsEarly_PollsUntilReady()
    {
        await using var kumod = await StartCreateAsync(
            context => FakeKumod.WriteEventsAsync(context, [FakeKumod.Event(OpId, OperationStatuses.Running, "placing")]),
            poll => poll < 3
                ? FakeKumod.Operation(OpId, OperationStatuses.Running, "booting (tcg)")
                : FakeKumod.Operation(OpId, OperationStatuses.Succeeded, "ready"));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web", "--image", "tiny");

        Assert.Equal(0, result.ExitCode);
        var lines = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["create web: placing", "create web: booting (tcg)", "create web: ready"], lines[..^1].Select(WithoutClock));
        Assert.Equal("vm web is running on node-1", lines[^1]);
        Assert.Equal(3, kumod.Requests.Count(r => r == $"GET /api/v1/operations/{OpId}"));
    }

    [Fact]
    public async Task Create_WhenTheConnectionOfTheEventStreamIsCut_PollsUntilReady()
    {
        await using var kumod = await StartCreateAsync(
            async context =>
            {
                await FakeKumod.WriteEventsAsync(context, [FakeKumod.Event(OpId, OperationStatuses.Running, "placing")]);
                context.Abort();
            },
            poll => poll < 3
                ? FakeKumod.Operation(OpId, OperationStatuses.Running, "booting (tcg)")
                : FakeKumod.Operation(OpId, OperationStatuses.Succeeded, "ready"));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web", "--image", "tiny");

        // The reset may discard the one streamed event before the client reads it, so only the polled steps are certain.
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("create web: booting (tcg)", result.Out);
        Assert.EndsWith("create web: ready\nvm web is running on node-1\n", result.Out);
        Assert.Equal(3, kumod.Requests.Count(r => r == $"GET /api/v1/operations/{OpId}"));
    }

    [Fact]
    public async Task Create_WhenTheOperationFails_PrintsOneErrorLine_AndExits1()
    {
        await using var kumod = await StartCreateAsync(
            context => FakeKumod.WriteEventsAsync(context, [FakeKumod.Event(OpId, OperationStatuses.Failed, "booting (tcg)")]),
            _ => FakeKumod.Operation(OpId, OperationStatuses.Failed, "booting (tcg)", error: "qemu exited with status 1"));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web", "--image", "tiny");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: create web failed: qemu exited with status 1"], result.ErrLines);
    }

    [Fact]
    public async Task Create_AsJson_KeepsProgressOffStdoutAndPrintsTheInstance()
    {
        await using var kumod = await StartCreateAsync(
            context => FakeKumod.WriteEventsAsync(context,
                [FakeKumod.Event(OpId, OperationStatuses.Running, "placing"), FakeKumod.Event(OpId, OperationStatuses.Succeeded, "ready")]),
            _ => FakeKumod.Operation(OpId, OperationStatuses.Succeeded, "ready"));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web", "--image", "tiny", "-o", "json");

        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.Out);
        Assert.Equal("running", json.RootElement.GetProperty("state").GetString());
        Assert.Contains("create web: placing", result.Err);
    }

    [Fact]
    public async Task Create_WithNoWait_PrintsTheOperationWithoutFollowingIt()
    {
        await using var kumod = await StartCreateAsync(_ => throw new InvalidOperationException("must not stream"),
            _ => throw new InvalidOperationException("must not poll"));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web", "--image", "tiny", "--no-wait");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains($"operation {OpId} accepted: create web", result.Out);
        Assert.Equal(["POST /api/v1/instances"], kumod.Requests);
    }

    [Fact]
    public async Task Create_WhenInterrupted_Exits130AndSaysHowToFollowTheOperation()
    {
        var streaming = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var kumod = await StartCreateAsync(
            async context =>
            {
                await FakeKumod.WriteEventsAsync(context, [FakeKumod.Event(OpId, OperationStatuses.Running, "booting (tcg)")]);
                streaming.SetResult();
                await Task.Delay(Timeout.Infinite, context.RequestAborted);
            },
            _ => FakeKumod.Operation(OpId, OperationStatuses.Running, "booting (tcg)"));
        using var ctrlC = new CancellationTokenSource();

        var run = CliRunner.RunAsync(["--url", kumod.Url.ToString(), "vm", "create", "web", "--image", "tiny"], cancellationToken: ctrlC.Token);
        await streaming.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await ctrlC.CancelAsync();
        var result = await run;

        Assert.Equal(130, result.ExitCode);
        Assert.Equal([$"error: interrupted; operation {OpId} goes on (follow it: kumo operation wait {OpId})"], result.ErrLines);
    }

    [Fact]
    public async Task Set_ReadsTheETag_ThenPutsMergedLabelsWithIfMatch()
    {
        string? ifMatch = null;
        InstancePut? put = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/instances/{name}", (HttpContext context, string name) =>
            {
                context.Response.Headers.ETag = "\"3\"";
                return FakeKumod.Ok(FakeKumod.Instance(name) with
                {
                    Labels = new Dictionary<string, string> { ["tier"] = "web", ["old"] = "x" },
                    Description = "before",
                });
            });
            app.MapPut("/api/v1/instances/{name}", (HttpContext context, string name, InstancePut body) =>
            {
                ifMatch = context.Request.Headers.IfMatch;
                put = body;
                return FakeKumod.Ok(FakeKumod.Instance(name) with { Labels = body.Labels!, Description = body.Description });
            });
        });

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "set", "web", "--label", "env=prod", "--label", "tier=front", "--remove-label", "old");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("\"3\"", ifMatch);
        Assert.Equal(new Dictionary<string, string> { ["tier"] = "front", ["env"] = "prod" }, put!.Labels);
        Assert.Equal("before", put.Description);
        Assert.Matches(@"Labels:\s+env=prod,tier=front", result.Out);
    }

    [Fact]
    public async Task Set_WhenTheVmChangedMeanwhile_ReportsThePreconditionFailure()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/instances/{name}", (string name) => FakeKumod.Ok(FakeKumod.Instance(name)));
            app.MapPut("/api/v1/instances/{name}", () => FakeKumod.Problem(412, ProblemTypes.PreconditionFailed, "Precondition failed",
                "instance web changed since it was read (version 4, not 3)"));
        });

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "set", "web", "--description", "x");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: instance web changed since it was read (version 4, not 3)"], result.ErrLines);
    }

    [Fact]
    public async Task List_Running_FiltersByStateOnTheServer()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
            app.MapGet("/api/v1/instances", () => FakeKumod.Ok(Array.Empty<Instance>())));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "list", "--running");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(["GET /api/v1/instances?state=running&type=vm"], kumod.Requests);
    }

    [Fact]
    public async Task Stop_FollowsTheOperationAndPrintsTheNewState()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapPost("/api/v1/instances/{name}/stop", (string name) =>
                Results.Json(FakeKumod.Operation("01JSTOP", OperationStatuses.Pending, kind: "stop", target: name), FakeKumod.Json, statusCode: 202));
            app.MapGet("/api/v1/operations/{id}/events", (HttpContext context, string id) =>
                FakeKumod.WriteEventsAsync(context, [FakeKumod.Event(id, OperationStatuses.Succeeded, "stopped")]));
            app.MapGet("/api/v1/operations/{id}", (string id) =>
                FakeKumod.Ok(FakeKumod.Operation(id, OperationStatuses.Succeeded, "stopped", kind: "stop")));
            app.MapGet("/api/v1/instances/{name}", (string name) => FakeKumod.Ok(FakeKumod.Instance(name, InstanceStates.Stopped)));
        });

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "stop", "web");

        Assert.Equal(0, result.ExitCode);
        Assert.EndsWith("vm web is stopped on node-1\n", result.Out);
    }

    /// <summary>Progress lines start with the local time, "HH:mm:ss ".</summary>
    private static string WithoutClock(string line)
    {
        Assert.Matches(@"^\d\d:\d\d:\d\d ", line);
        return line[9..];
    }
}
