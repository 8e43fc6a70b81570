using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.Volumes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>Volumes: extra qcow2 disks, project-scoped. Create is immediate; attach, detach, resize and delete are operations.</summary>
internal static class VolumeEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/volumes").WithTags("volumes");

        g.MapGet("/", async (VolumeService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
            await s.ListAsync(await p.ResolveAsync(Caller.Of(http), project, ct), ct))
            .Requires("volume", "list");

        g.MapGet("/{name}", async (VolumeService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            await s.GetAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct))
            .Requires("volume", "get");

        g.MapPost("/", async (VolumeService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            var volume = await s.CreateAsync(caller, resolved, await Problems.ReadJsonAsync<VolumesPost>(http.Request), ct);
            return TypedResults.Created($"/api/v1/volumes/{volume.Name}", volume);
        }).Accepts<VolumesPost>("application/json").Produces<Volume>(201).Requires("volume", "create");

        foreach (var action in new[] { "attach", "detach", "resize" })
        {
            g.MapPost($"/{{name}}/{action}", async (VolumeService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            {
                var caller = Caller.Of(http);
                var resolved = await p.ResolveAsync(caller, project, ct);
                var body = await Problems.ReadJsonAsync<VolumeAction>(http.Request);
                return InstanceEndpoints.Accepted(action switch
                {
                    "attach" => await s.AttachAsync(caller, resolved, name, body, ct),
                    "detach" => await s.DetachAsync(caller, resolved, name, body, ct),
                    _ => await s.ResizeAsync(caller, resolved, name, body, ct),
                });
            }).Accepts<VolumeAction>("application/json").Produces<Operation>(202).Requires("volume", action);
        }

        g.MapDelete("/{name}", async (VolumeService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return InstanceEndpoints.Accepted(await s.DeleteAsync(caller, await p.ResolveAsync(caller, project, ct), name, ct));
        }).Produces<Operation>(202).Requires("volume", "delete");
    }
}
