using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.LiveMigration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>Live migration of a running VM to another node. Admins only: it decides where guests run.</summary>
internal static class MigrationEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/instances").WithTags("instances");

        // 202 + an operation whose message shows the bytes sent; it ends when the instance has moved (or failed, with the VM still on its node).
        g.MapPost("/{name}/migrate", async (MigrationService m, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            return InstanceEndpoints.Accepted(await m.StartAsync(caller, resolved, name, await Problems.ReadJsonAsync<InstanceMigratePost>(http.Request), ct));
        }).Accepts<InstanceMigratePost>("application/json").Produces<Operation>(202).Requires("instance", "migrate");
    }
}
