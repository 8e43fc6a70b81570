namespace Kumo.Core;

/// <summary>
/// A port of the node's own addresses forwarded (DNAT) to an instance's address on its tenant network, so clients
/// outside the node reach a guest's service: kumo port-forward add web --public 2222 --to 22.
/// </summary>
public sealed record PortForward
{
    public required string Instance { get; init; }
    public required string Project { get; init; }

    /// <summary>tcp or udp.</summary>
    public required string Protocol { get; init; }

    /// <summary>The port on the node's addresses; unique per protocol across the cloud.</summary>
    public required int PublicPort { get; init; }

    /// <summary>The guest's port.</summary>
    public required int Port { get; init; }

    /// <summary>The guest's address the traffic goes to (its IPAM address on <see cref="Network"/>).</summary>
    public required string Address { get; init; }

    public required string Network { get; init; }

    /// <summary>The node whose addresses carry the public port (the instance's node); null while unplaced.</summary>
    public string? Node { get; init; }

    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>Body of POST /instances/{name}/port-forwards.</summary>
public sealed record PortForwardsPost
{
    /// <summary>The guest's port (required).</summary>
    public int? Port { get; init; }

    /// <summary>The node port; omitted: the lowest free port of the admin's range.</summary>
    public int? PublicPort { get; init; }

    /// <summary>tcp (default) or udp.</summary>
    public string? Protocol { get; init; }
}

public static class PortProtocols
{
    public const string Tcp = "tcp";
    public const string Udp = "udp";
}
