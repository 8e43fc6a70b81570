using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.Snapshots;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>Snapshots of a VM's root disk: list, create, restore, delete. Changes are 202 operations the agent finishes.</summary>
internal static class SnapshotEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/instances/{name}/snapshots").WithTags("snapshots");

        g.MapGet("/", async (SnapshotService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            await s.ListAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct))
            .Requires("snapshot", "list");

        g.MapPost("/", async (SnapshotService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            return InstanceEndpoints.Accepted(await s.CreateAsync(caller, resolved, name, await Problems.ReadJsonAsync<SnapshotsPost>(http.Request), ct));
        }).Accepts<SnapshotsPost>("application/json").Produces<Operation>(202).Requires("snapshot", "create");

        g.MapPost("/{snapshot}/restore", async (SnapshotService s, ProjectService p, HttpContext http, string name, string snapshot, string? project,
            CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return InstanceEndpoints.Accepted(await s.RestoreAsync(caller, await p.ResolveAsync(caller, project, ct), name, snapshot, ct));
        }).Produces<Operation>(202).Requires("snapshot", "restore");

        g.MapDelete("/{snapshot}", async (SnapshotService s, ProjectService p, HttpContext http, string name, string snapshot, string? project,
            CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return InstanceEndpoints.Accepted(await s.DeleteAsync(caller, await p.ResolveAsync(caller, project, ct), name, snapshot, ct));
        }).Produces<Operation>(202).Requires("snapshot", "delete");
    }
}
