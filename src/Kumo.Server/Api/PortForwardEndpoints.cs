using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.Networking;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>Port forwards from the node's addresses to a VM on a tenant network. The VM's owner and admins.</summary>
internal static class PortForwardEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapGet("/port-forwards", async (PortForwardService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
            await s.ListAsync(await p.ResolveAsync(Caller.Of(http), project, ct), ct))
            .WithTags("networks").Produces<List<PortForward>>().Requires("port-forward", "list");

        var g = api.MapGroup("/instances/{name}/port-forwards").WithTags("networks");

        g.MapGet("/", async (PortForwardService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return await s.ListForAsync(caller, await p.ResolveAsync(caller, project, ct), name, ct);
        }).Produces<List<PortForward>>().Requires("port-forward", "list");

        g.MapPost("/", async (PortForwardService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            var forward = await s.CreateAsync(caller, resolved, name, await Problems.ReadJsonAsync<PortForwardsPost>(http.Request), ct);
            return TypedResults.Created($"/api/v1/instances/{name}/port-forwards/{forward.PublicPort}?protocol={forward.Protocol}", forward);
        }).Accepts<PortForwardsPost>("application/json").Produces<PortForward>(201).Requires("port-forward", "create");

        g.MapDelete("/{publicPort}", async (PortForwardService s, ProjectService p, HttpContext http, string name, int publicPort, string? protocol,
            string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            await s.DeleteAsync(caller, await p.ResolveAsync(caller, project, ct), name, publicPort, protocol, ct);
            return TypedResults.NoContent();
        }).Requires("port-forward", "delete");
    }
}
