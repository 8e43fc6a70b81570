using Kumo.Core;
using Kumo.Server.Debugging;
using Kumo.Server.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>A VM's gdb stub on a port from the admin's pool. Owner and admins only.</summary>
internal static class DebugEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/instances").WithTags("instances");

        g.MapGet("/{name}/debug", async (DebugService d, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return await d.GetAsync(caller, await p.ResolveAsync(caller, project, ct), name, ct);
        }).Produces<DebugStub>().Requires("instance", "debug");

        // Allocates a port (or returns the one the VM has) and answers once the node confirmed that QEMU listens.
        g.MapPost("/{name}/debug", async (DebugService d, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return await d.EnableAsync(caller, await p.ResolveAsync(caller, project, ct), name, ct);
        }).Produces<DebugStub>().Requires("instance", "debug");

        g.MapDelete("/{name}/debug", async (DebugService d, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return await d.DisableAsync(caller, await p.ResolveAsync(caller, project, ct), name, ct);
        }).Produces<DebugStub>().Requires("instance", "debug");
    }
}
