using Kumo.Core;
using Kumo.Server.Clusters;
using Kumo.Server.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>Virtual clusters (create, list, show, scale, delete) and the reservation calendar they are booked on.</summary>
internal static class ClusterEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/clusters").WithTags("clusters");

        g.MapGet("/", async (ClusterService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
            await s.ListAsync(await p.ResolveAsync(Caller.Of(http), project, ct), ct))
            .Requires("cluster", "list");

        g.MapGet("/{name}", async (ClusterService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            await s.GetAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct))
            .Requires("cluster", "get");

        // 202 + an operation that ends when every member runs (or the cluster was rolled back); a reservation's ends at once.
        g.MapPost("/", async (ClusterService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            return InstanceEndpoints.Accepted(await s.CreateAsync(caller, resolved, await Problems.ReadJsonAsync<ClustersPost>(http.Request), ct));
        }).Accepts<ClustersPost>("application/json").Produces<Operation>(202).Requires("cluster", "create");

        g.MapPost("/{name}/scale", async (ClusterService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            return InstanceEndpoints.Accepted(await s.ScaleAsync(caller, resolved, name, await Problems.ReadJsonAsync<ClusterScale>(http.Request), ct));
        }).Accepts<ClusterScale>("application/json").Produces<Operation>(202).Requires("cluster", "scale");

        g.MapDelete("/{name}", async (ClusterService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return InstanceEndpoints.Accepted(await s.DeleteAsync(caller, await p.ResolveAsync(caller, project, ct), name, ct));
        }).Produces<Operation>(202).Requires("cluster", "delete");

        var r = api.MapGroup("/reservations").WithTags("reservations");

        r.MapGet("/", async (ClusterService s, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
            await s.ReservationsAsync(await p.ResolveAsync(Caller.Of(http), project, ct), ct))
            .Requires("reservation", "list");

        r.MapGet("/{name}", async (ClusterService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            await s.ReservationAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct))
            .Requires("reservation", "get");

        // Cancels a scheduled reservation, or ends a running one now (its VM or cluster is deleted; ended ones are forgotten).
        r.MapDelete("/{name}", async (ClusterService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return InstanceEndpoints.Accepted(await s.DeleteAsync(caller, await p.ResolveAsync(caller, project, ct), name, ct, reservation: true));
        }).Produces<Operation>(202).Requires("reservation", "delete");
    }
}
