using System.Net;
using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Client.Tests;

public sealed class KumoClientTests
{
    [Fact]
    public async Task Conflict_ThrowsKumoApiExceptionWithParsedProblem()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/instances", () =>
            FakeKumod.Problem(409, ProblemTypes.NoCapacity, "No capacity", "no node can fit 64G",
                rejections: new() { ["node-1"] = "needs 64G memory, 15G free" })));
        using var client = new KumoClient(kumod.Url);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.CreateInstanceAsync(new InstancesPost { Name = "big" }));

        Assert.False(e.IsUnreachable);
        Assert.True(e.Is(ProblemTypes.NoCapacity));
        Assert.Equal(HttpStatusCode.Conflict, e.StatusCode);
        Assert.Equal("No capacity", e.Problem!.Title);
        Assert.Equal("no node can fit 64G", e.Message);
        Assert.Equal("needs 64G memory, 15G free", e.Problem.Rejections!["node-1"]);
    }

    [Fact]
    public async Task Validation_CarriesFieldErrors()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/instances", () =>
            FakeKumod.Problem(400, ProblemTypes.Validation, "Invalid request",
                errors: new() { ["memory"] = ["memory must be at least 64M"], ["cpus"] = ["cpus must be at least 1"] })));
        using var client = new KumoClient(kumod.Url);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.CreateInstanceAsync(new InstancesPost { Name = "web" }));

        Assert.Equal(400, e.Problem!.Status);
        Assert.Equal("Invalid request", e.Message);
        Assert.Equal(["memory must be at least 64M"], e.Problem.Errors!["memory"]);
        Assert.Equal(["cpus must be at least 1"], e.Problem.Errors["cpus"]);
    }

    [Fact]
    public async Task ErrorWithoutProblemJson_StillThrowsWithStatusAndText()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapGet("/api/v1/nodes", () =>
            Results.Text("upstream exploded", statusCode: 502)));
        using var client = new KumoClient(kumod.Url);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.ListNodesAsync());

        Assert.Equal(HttpStatusCode.BadGateway, e.StatusCode);
        Assert.Equal("upstream exploded", e.Message);
        Assert.Equal("about:blank", e.Problem!.Type);
    }

    [Fact]
    public async Task ConnectionRefused_ThrowsUnreachableWithHowToStartKumod()
    {
        using var client = new KumoClient(new Uri($"http://127.0.0.1:{FakeKumod.UnusedPort()}"));

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.ListNodesAsync());

        Assert.True(e.IsUnreachable);
        Assert.Null(e.Problem);
        Assert.StartsWith("cannot reach kumod at http://127.0.0.1:", e.Message);
        Assert.EndsWith("(is it running? try ./kumo up)", e.Message);
    }

    [Fact]
    public async Task ListInstances_SendsFiltersAndReadsCamelCase()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapGet("/api/v1/instances", () =>
            FakeKumod.Ok(new[] { FakeKumod.Instance("web") })));
        using var client = new KumoClient(kumod.Url);

        var instances = await client.ListInstancesAsync(InstanceStates.Running, "vm");

        Assert.Equal("web", Assert.Single(instances).Name);
        Assert.Equal(256 * ByteSize.MiB, instances[0].MemoryBytes);
        Assert.Contains("GET /api/v1/instances?state=running&type=vm", kumod.Requests);
    }

    [Fact]
    public async Task GetInstanceWithETag_ThenPut_SendsTheETagAsIfMatch()
    {
        string? ifMatch = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/instances/{name}", (HttpContext context, string name) =>
            {
                context.Response.Headers.ETag = "\"7\"";
                return FakeKumod.Ok(FakeKumod.Instance(name));
            });
            app.MapPut("/api/v1/instances/{name}", (HttpContext context, string name, InstancePut put) =>
            {
                ifMatch = context.Request.Headers.IfMatch;
                return FakeKumod.Ok(FakeKumod.Instance(name) with { Description = put.Description });
            });
        });
        using var client = new KumoClient(kumod.Url);

        var read = await client.GetInstanceWithETagAsync("web");
        var updated = await client.PutInstanceAsync("web", new InstancePut { Description = "front" }, read.ETag);

        Assert.Equal("\"7\"", read.ETag);
        Assert.Equal("\"7\"", ifMatch);
        Assert.Equal("front", updated.Description);
    }

    [Fact]
    public async Task BackupAndRestore_MoveTheBytesUnchanged()
    {
        var database = Enumerable.Range(0, 100_000).Select(i => (byte)i).ToArray();
        byte[]? restored = null;
        string? restoredType = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/admin/backup", () => Results.Bytes(database, "application/octet-stream"));
            app.MapPost("/api/v1/admin/restore", async (HttpContext context) =>
            {
                using var copy = new MemoryStream();
                await context.Request.Body.CopyToAsync(copy);
                restored = copy.ToArray();
                restoredType = context.Request.ContentType;
                return Results.NoContent();
            });
        });
        using var client = new KumoClient(kumod.Url);

        using var backup = new MemoryStream();
        await client.DownloadBackupAsync(backup);
        backup.Position = 0;
        await client.RestoreAsync(backup);

        Assert.Equal(database, backup.ToArray());
        Assert.Equal(database, restored);
        Assert.Equal("application/octet-stream", restoredType);
    }

    [Fact]
    public async Task RemoveNode_WithForce_SendsForceQuery()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapDelete("/api/v1/nodes/{name}", () => Results.NoContent()));
        using var client = new KumoClient(kumod.Url);

        await client.RemoveNodeAsync("node-2", force: true);

        Assert.Contains("DELETE /api/v1/nodes/node-2?force=true", kumod.Requests);
    }
}
