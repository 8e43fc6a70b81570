using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.Networking;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>Tenant networks of a project: create, list, show, delete (refused while instances use them).</summary>
internal static class NetworkEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/networks").WithTags("networks");

        g.MapGet("/", async (NetworkService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
            await s.ListAsync(await p.ResolveAsync(Caller.Of(http), project, ct), ct))
            .Requires("network", "list");

        g.MapGet("/{name}", async (NetworkService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            await s.GetAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct))
            .Requires("network", "get");

        g.MapPost("/", async (NetworkService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            var network = await s.CreateAsync(caller, resolved, await Problems.ReadJsonAsync<NetworksPost>(http.Request), ct);
            return TypedResults.Created($"/api/v1/networks/{network.Name}", network);
        }).Accepts<NetworksPost>("application/json").Produces<Network>(201).Requires("network", "create");

        g.MapDelete("/{name}", async (NetworkService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            await s.DeleteAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct);
            return TypedResults.NoContent();
        }).Requires("network", "delete");
    }
}
