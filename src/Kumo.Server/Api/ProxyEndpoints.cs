using Kumo.Core;
using Kumo.Server.Proxy;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

internal static class ProxyEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        // Every user's routes at once, with node ports: for operators only.
        api.MapGet("/proxy/routes", (ProxyRouteTable table, ProxyHost proxy) => table.Current.Select(r => new ProxyRoute
        {
            InstanceId = r.InstanceId,
            Project = r.Project,
            Owner = r.Owner,
            Name = r.Name,
            Destination = r.Destination.ToString(),
            Urls = proxy.UrlsFor(r.Owner, r.Name),
        }).ToList()).WithTags("proxy").Requires("proxy", "routes");
    }
}
