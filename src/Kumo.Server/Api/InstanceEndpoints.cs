using System.Globalization;
using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.Instances;
using Kumo.Server.Proxy;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

internal static class InstanceEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/instances").WithTags("instances");

        g.MapGet("/", async (InstanceService s, ProjectService p, ProxyHost proxy, HttpContext http, string? project, string? state, string? type, CancellationToken ct) =>
            (await s.ListAsync(await p.ResolveAsync(Caller.Of(http), project, ct), state, type, ct)).Select(proxy.WithUrls).ToList())
            .Requires("instance", "list");

        g.MapGet("/{name}", async (InstanceService s, ProjectService p, ProxyHost proxy, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var i = proxy.WithUrls(await s.GetAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct));
            http.Response.Headers.ETag = ETag(i.Version);
            return i;
        }).Requires("instance", "get");

        // With start/end the VM is reserved for that window instead (the operation ends at once unless the window is open).
        g.MapPost("/", async (InstanceService s, Clusters.ClusterService clusters, ProjectService p, HttpContext http, string? project, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var resolved = await p.ResolveAsync(caller, project, ct);
            var body = await Problems.ReadJsonAsync<InstancesPost>(http.Request);
            if (body is { Start: not null } or { End: not null }) return Accepted(await clusters.ReserveVmAsync(caller, resolved, body, ct));
            return Accepted(await s.CreateAsync(caller, resolved, body, ct));
        }).Accepts<InstancesPost>("application/json").Produces<Operation>(202).Requires("instance", "create");

        g.MapPut("/{name}", async (InstanceService s, ProjectService p, ProxyHost proxy, HttpContext http, string name, string? project, CancellationToken ct) =>
        {
            var resolved = await p.ResolveAsync(Caller.Of(http), project, ct);
            var version = ParseIfMatch(http.Request.Headers.IfMatch.ToString());
            var i = proxy.WithUrls(await s.PutAsync(resolved, name, await Problems.ReadJsonAsync<InstancePut>(http.Request), version, ct));
            http.Response.Headers.ETag = ETag(i.Version);
            return i;
        }).Accepts<InstancePut>("application/json").Requires("instance", "update");

        foreach (var action in new[] { "start", "stop", "restart", "destroy" })
        {
            g.MapPost($"/{{name}}/{action}", async (InstanceService s, ProjectService p, HttpContext http, string name, string? project, CancellationToken ct) =>
            {
                var caller = Caller.Of(http);
                return Accepted(await s.ActAsync(caller, await p.ResolveAsync(caller, project, ct), name, action, ct));
            }).Produces<Operation>(202).Requires("instance", action);
        }

        g.MapDelete("/{name}", async (InstanceService s, ProjectService p, HttpContext http, string name, string? project, bool? force, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            return Accepted(await s.DeleteAsync(caller, await p.ResolveAsync(caller, project, ct), name, force ?? false, ct));
        }).Produces<Operation>(202).Requires("instance", "delete");
    }

    internal static IResult Accepted(Operation op) =>
        op.Status == OperationStatuses.Succeeded && op.Kind != "create"
            ? TypedResults.Ok(op)
            : TypedResults.Accepted($"/api/v1/operations/{op.Id}", op);

    private static string ETag(long version) => $"\"{version.ToString(CultureInfo.InvariantCulture)}\"";

    /// <summary>The version an If-Match names, or null for <c>*</c> (RFC 9110: any current representation).</summary>
    private static long? ParseIfMatch(string header)
    {
        if (string.IsNullOrWhiteSpace(header))
            throw new ProblemException(428, ProblemTypes.PreconditionRequired, "If-Match is required",
                "send the ETag from GET in an If-Match header so concurrent changes are not lost");
        if (header.Trim() == "*") return null;
        var v = header.Trim().Trim('"');
        if (v.StartsWith("W/", StringComparison.Ordinal)) v = v[2..].Trim('"');
        return long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var version)
            ? version
            : throw new ProblemException(412, ProblemTypes.PreconditionFailed, "If-Match does not match", $"'{header}' is not an ETag this server issued");
    }
}
