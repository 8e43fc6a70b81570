using System.Net;

namespace Kumo.Server.Proxy;

/// <summary>kumod's reverse proxy for containers' published ports.</summary>
public sealed record ProxyOptions
{
    /// <summary>Where the proxy listens (plain HTTP); null runs no proxy. Port 0 picks a free port (tests).</summary>
    public IPEndPoint? Endpoint { get; init; }

    /// <summary>Host routes are NAME.USER.DOMAIN; path routes are DOMAIN/u/USER/NAME/ (any host).</summary>
    public string Domain { get; init; } = "localhost";

    /// <summary>How often the route table is rebuilt from the instances' state (a container's route appears within this).</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromSeconds(1);
}
