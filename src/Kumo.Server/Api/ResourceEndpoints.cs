using System.Text.Json;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Identity;
using Kumo.Server.Images;
using Kumo.Server.Operations;
using Kumo.Server.Scheduling;
using Kumo.Server.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

internal static class ResourceEndpoints
{
    public static void MapNodes(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/nodes").WithTags("nodes");
        g.MapGet("/", (NodeService s, CancellationToken ct) => s.ListAsync(ct)).Requires("node", "list");
        g.MapGet("/{name}", (NodeService s, string name, CancellationToken ct) => s.GetAsync(name, ct)).Requires("node", "get");
        g.MapPost("/{name}/drain", (NodeService s, string name, CancellationToken ct) => s.SetDrainingAsync(name, true, ct)).Requires("node", "drain");
        g.MapPost("/{name}/undrain", (NodeService s, string name, CancellationToken ct) => s.SetDrainingAsync(name, false, ct)).Requires("node", "drain");
        g.MapDelete("/{name}", async (NodeService s, string name, bool? force, CancellationToken ct) =>
        {
            await s.RemoveAsync(name, force ?? false, ct);
            return TypedResults.NoContent();
        }).Requires("node", "remove");
    }

    public static void MapImages(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/images").WithTags("images");
        g.MapGet("/", async (ImageService s, ProjectService p, HttpContext http, string? type, string? project, CancellationToken ct) =>
            await s.ListAsync(await p.ResolveAsync(Caller.Of(http), project, ct), type, ct)).Requires("image", "list");
        g.MapGet("/{name}", async (ImageService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            await s.GetAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct)).Requires("image", "get");

        // The body is the image file itself, streamed to disk (never buffered): any format the importer detects.
        g.MapPost("/import", async (ImageImporter importer, ProjectService p, HttpContext http, string? name, string? type, string? readiness,
            string? description, string? project, IOptions<ImageOptions> limits, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
                size.MaxRequestBodySize = limits.Value.MaxImageBytes + 1;
            var op = await importer.ImportAsync(caller, resolved, new ImageImportRequest(name, type, readiness, description),
                http.Request.Body, http.Request.ContentLength, ct);
            return TypedResults.Accepted($"/api/v1/operations/{op.Id}", op);
        }).Accepts<Stream>("application/octet-stream").Produces<Operation>(202).Requires("image", "import");

        g.MapPost("/build-base", async (BaseImageBuilder builder, HttpContext http, ImagesBuildBasePost? body, CancellationToken ct) =>
        {
            var op = await builder.BuildAsync(Caller.Of(http), body, ct);
            return TypedResults.Accepted($"/api/v1/operations/{op.Id}", op);
        }).Produces<Operation>(202).Requires("image", "build-base");

        g.MapGet("/{name}/content", async (ImageExport export, ProjectService p, HttpContext http, string name, string? format, string? project,
            CancellationToken ct) =>
            await export.WriteAsync(http, await p.ResolveAsync(Caller.Of(http), project, ct), name, format, ct))
            .Produces(200, contentType: "application/octet-stream").Requires("image", "export");

        // A built container image also leaves its node's engine; when the node cannot be reached now, it stays there.
        g.MapDelete("/{name}", async (ImageService s, ContainerImageBuilds builds, ProjectService p, HttpContext http, string name, string? type,
            string? project, CancellationToken ct) =>
        {
            var removed = await s.DeleteAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, type, ct);
            if (removed.NodeId is { } node) await builds.RemoveFromNodeAsync(removed.Id, node, ct);
            return TypedResults.NoContent();
        }).Requires("image", "delete");

        // kumo ct build: the body is the build context (a tar), streamed in; the answer streams the build's output (NDJSON).
        g.MapPost("/build", async (ContainerImageBuilds builds, ProjectService p, HttpContext http, string? name, string? node, string? dockerfile,
            [Microsoft.AspNetCore.Mvc.FromQuery] string[]? buildArg, string? project, IOptions<ImageOptions> limits, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
                size.MaxRequestBodySize = limits.Value.MaxBuildContextBytes + 1;
            await builds.BuildAsync(http, caller, resolved, new ContainerBuildRequest(name, node, dockerfile, buildArg), ct);
            return Results.Empty;
        }).Accepts<Stream>("application/x-tar").Produces(200, contentType: "application/x-ndjson").Requires("image", "build");
    }

    public static void MapOperations(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/operations").WithTags("operations");
        g.MapGet("/{id}", async (OperationStore s, UserService users, HttpContext http, string id, CancellationToken ct) =>
            await VisibleAsync(s, users, http, id, ct)).Requires("operation", "get");
        g.MapGet("/{id}/events", StreamAsync).Produces(200, contentType: "text/event-stream").Requires("operation", "watch");
    }

    /// <summary>Server-sent events: the current state first, then every change, closing after a final status.</summary>
    private static async Task<Operation> VisibleAsync(OperationStore store, UserService users, HttpContext http, string id, CancellationToken ct)
    {
        var caller = Caller.Of(http);
        var projects = caller.IsAdmin ? new HashSet<string>() : await users.ProjectsOfAsync(caller.UserId!, ct);
        // Someone else's operation is "not found", not "forbidden": its existence is not theirs to learn.
        return await store.GetAsync(id, caller, projects, ct) ?? throw ProblemException.NotFound("operation", id);
    }

    private static async Task StreamAsync(OperationStore store, OperationHub hub, UserService users, HttpContext http, string id, CancellationToken ct)
    {
        // Subscribe before reading, so a change between the read and the subscription is not missed.
        using var sub = hub.Subscribe(id);
        var op = await VisibleAsync(store, users, http, id, ct);
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        var current = new OperationEvent { OperationId = op.Id, Status = op.Status, Message = op.Error ?? op.Message, At = op.UpdatedAt };
        await SendAsync(http, current, ct);
        if (OperationStatuses.IsFinal(op.Status)) return;
        while (true)
        {
            OperationEvent e;
            using (var idle = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                idle.CancelAfter(TimeSpan.FromSeconds(15));
                try
                {
                    e = await sub.Reader.ReadAsync(idle.Token);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    // Idle: a comment line keeps proxies from closing the stream.
                    await http.Response.WriteAsync(": keep-alive\n\n", ct);
                    await http.Response.Body.FlushAsync(ct);
                    continue;
                }
            }
            await SendAsync(http, e, ct);
            if (OperationStatuses.IsFinal(e.Status)) return;
        }
    }

    private static async Task SendAsync(HttpContext http, OperationEvent e, CancellationToken ct)
    {
        await http.Response.WriteAsync("data: " + JsonSerializer.Serialize(e, Problems.Json) + "\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }

    public static void MapAdmin(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/admin").WithTags("admin");
        g.MapGet("/backup", async (Database db, HttpContext http, CancellationToken ct) =>
        {
            var tmp = Path.Combine(Path.GetDirectoryName(db.Path)!, $".backup-{Guid.NewGuid():N}.db");
            try
            {
                await db.BackupToAsync(tmp, ct);
                http.Response.ContentType = "application/octet-stream";
                http.Response.Headers.ContentDisposition = "attachment; filename=kumo-backup.db";
                await using var f = File.OpenRead(tmp);
                await f.CopyToAsync(http.Response.Body, ct);
            }
            finally
            {
                File.Delete(tmp);
            }
        }).Produces(200, contentType: "application/octet-stream").Requires("admin", "backup");

        g.MapPost("/restore", async (Database db, Scheduler scheduler, NodeSignals signals, HttpRequest req, CancellationToken ct) =>
        {
            var tmp = Path.Combine(Path.GetDirectoryName(db.Path)!, $".restore-{Guid.NewGuid():N}.db");
            try
            {
                await using (var f = File.Create(tmp))
                    await req.Body.CopyToAsync(f, ct);
                try
                {
                    await db.RestoreFromAsync(tmp, ct);
                }
                catch (Exception e) when (e is InvalidDataException or Microsoft.Data.Sqlite.SqliteException)
                {
                    throw new ProblemException(400, ProblemTypes.Validation, "Not a usable Kumo backup", e.Message);
                }
                scheduler.Load(db);
                signals.NotifyAll();
                return TypedResults.NoContent();
            }
            finally
            {
                File.Delete(tmp);
            }
        }).Accepts<Stream>("application/octet-stream").Requires("admin", "restore");
    }
}
