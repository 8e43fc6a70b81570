using Yarp.ReverseProxy.Configuration;

namespace Kumo.Server.Proxy;

/// <summary>One running container that a user reaches through the proxy: its owner's name, its name, where it listens.</summary>
public sealed record ContainerRoute(string InstanceId, string Project, string Owner, string Name, Uri Destination);

/// <summary>
/// Turns the running containers into YARP routes: host <c>NAME.USER.DOMAIN</c> (any path) and path prefix
/// <c>/u/USER/NAME/</c> (any host, prefix stripped) both go to the container's first published port.
/// </summary>
public static class ContainerRoutes
{
    /// <summary>Path routes are tried after host routes, so on alice's host every path is alice's app's.</summary>
    private const int HostOrder = 0;
    private const int PathOrder = 1;

    public static string Host(string owner, string name, string domain) => $"{name}.{owner}.{domain}";

    public static string PathPrefix(string owner, string name) => $"/u/{owner}/{name}";

    public static (IReadOnlyList<RouteConfig> Routes, IReadOnlyList<ClusterConfig> Clusters) Build(IEnumerable<ContainerRoute> containers, string domain)
    {
        var routes = new List<RouteConfig>();
        var clusters = new List<ClusterConfig>();
        foreach (var c in containers)
        {
            var cluster = "ct-" + c.InstanceId;
            clusters.Add(new ClusterConfig
            {
                ClusterId = cluster,
                Destinations = new Dictionary<string, DestinationConfig> { ["port"] = new() { Address = c.Destination.ToString() } },
            });
            routes.Add(new RouteConfig
            {
                RouteId = cluster + "-host",
                ClusterId = cluster,
                Order = HostOrder,
                // A host without a port matches any port, so the route holds whichever port the proxy listens on.
                Match = new RouteMatch { Hosts = [Host(c.Owner, c.Name, domain)], Path = "/{**rest}" },
            });
            var prefix = PathPrefix(c.Owner, c.Name);
            routes.Add(new RouteConfig
            {
                RouteId = cluster + "-path",
                ClusterId = cluster,
                Order = PathOrder,
                Match = new RouteMatch { Path = prefix + "/{**rest}" },
                Transforms =
                [
                    new Dictionary<string, string> { ["PathRemovePrefix"] = prefix },
                    // Lets an app that builds absolute links know where it is mounted. YARP's own X-Forwarded-Prefix
                    // would carry the (empty) path base and replace ours, so it is turned off for this route.
                    new Dictionary<string, string> { ["X-Forwarded"] = "Set", ["Prefix"] = "Off" },
                    new Dictionary<string, string> { ["RequestHeader"] = "X-Forwarded-Prefix", ["Set"] = prefix },
                ],
            });
        }
        return (routes, clusters);
    }

    /// <summary>The URLs a user opens for a container's route: by host name, and by path on the proxy's domain.</summary>
    public static IReadOnlyList<string> Urls(string owner, string name, string domain, int port)
    {
        var suffix = port == 80 ? "" : ":" + port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return [$"http://{Host(owner, name, domain)}{suffix}/", $"http://{domain}{suffix}{PathPrefix(owner, name)}/"];
    }
}
