using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Identity;
using Kumo.Server.Monitoring;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>
/// Monitoring: GET /metrics (Prometheus text; scrape it with an API token: an admin's sees everything, a user's
/// only their projects' instances and the nodes), GET /api/v1/metrics (latest sample of everything the caller may see,
/// for `kumo top`), GET /api/v1/instances/{name}/metrics (recent history).
/// </summary>
internal static class MetricsEndpoints
{
    public static void Map(IEndpointRouteBuilder app, RouteGroupBuilder api)
    {
        app.MapGet("/metrics", async (MetricsService metrics, NodeService nodes, HttpContext http, CancellationToken ct) =>
        {
            var instances = await metrics.VisibleInstancesAsync(Caller.Of(http), ct);
            var all = await nodes.ListAsync(ct);
            http.Response.ContentType = PrometheusExposition.ContentType;
            await PrometheusExposition.WriteAsync(http.Response.Body, all, instances, metrics.Store, ct);
        }).ExcludeFromDescription().Requires("metrics", "scrape");

        api.MapGet("/metrics", (MetricsService metrics, HttpContext http, CancellationToken ct) => metrics.SummaryAsync(Caller.Of(http), ct))
            .WithTags("metrics").Requires("metrics", "list");

        api.MapGet("/instances/{name}/metrics", async (MetricsService metrics, ProjectService p, HttpContext http, string name, string? project,
            CancellationToken ct) => await metrics.InstanceAsync(await p.ResolveAsync(Caller.Of(http), project, ct), name, ct))
            .WithTags("instances").Produces<InstanceMetrics>().Requires("instance", "metrics");
    }
}
