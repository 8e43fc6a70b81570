namespace Kumo.Core;

/// <summary>Life of a virtual cluster. Persisted; never rename a value.</summary>
public static class ClusterStates
{
    /// <summary>A reservation whose window has not started: capacity is promised, nothing is created yet.</summary>
    public const string Scheduled = "scheduled";

    /// <summary>Members are being created and booted; the create operation is still running.</summary>
    public const string Creating = "creating";

    /// <summary>Every member is running.</summary>
    public const string Ready = "ready";

    /// <summary>Was ready; at least one member is not running now.</summary>
    public const string Degraded = "degraded";

    /// <summary>Nodes are being added or removed.</summary>
    public const string Scaling = "scaling";

    /// <summary>A member failed while the cluster was being created: everything it made is being removed.</summary>
    public const string RollingBack = "rolling-back";

    public const string Deleting = "deleting";

    /// <summary>The reservation window closed: members are being stopped and released.</summary>
    public const string Ending = "ending";

    /// <summary>The reservation window closed and everything was released; kept as history until deleted.</summary>
    public const string Ended = "ended";

    /// <summary>A reserved cluster that could not be created at its start time (kept so the owner learns why).</summary>
    public const string Failed = "failed";
}

/// <summary>A virtual cluster: a frontend with an outside address plus N compute nodes on a private network.</summary>
public sealed record Cluster
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Project { get; init; }
    public string? Owner { get; init; }
    public required string State { get; init; }
    public string? Message { get; init; }

    /// <summary>Compute nodes asked for (the frontend is extra).</summary>
    public int Nodes { get; init; }

    public required string FrontendImage { get; init; }
    public int FrontendCpus { get; init; }
    public long FrontendMemoryBytes { get; init; }
    public required string NodeImage { get; init; }
    public int NodeCpus { get; init; }
    public long NodeMemoryBytes { get; init; }

    /// <summary>The private network joining the frontend and the compute nodes (made by and for the cluster).</summary>
    public required string PrivateNetwork { get; init; }
    public required string PrivateSubnet { get; init; }

    /// <summary>The network holding the frontend's outside address (NAT).</summary>
    public required string ExternalNetwork { get; init; }

    /// <summary>Node port forwarded to the frontend's <see cref="ExposePort"/>; null when none.</summary>
    public int? PublicPort { get; init; }
    public int? ExposePort { get; init; }

    /// <summary>Reservation window (UTC), when the cluster was reserved rather than created now.</summary>
    public DateTimeOffset? Start { get; init; }
    public DateTimeOffset? End { get; init; }

    public IReadOnlyList<ClusterMember> Members { get; init; } = [];
    public IReadOnlyList<ClusterEvent> Events { get; init; } = [];
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>One VM of a cluster: the frontend or a compute node.</summary>
public sealed record ClusterMember
{
    public required string Name { get; init; }

    /// <summary>frontend or node.</summary>
    public required string Role { get; init; }
    public required string State { get; init; }
    public string? Node { get; init; }

    /// <summary>Address on the cluster's private network.</summary>
    public string? PrivateAddress { get; init; }

    /// <summary>The frontend's address on the external network.</summary>
    public string? ExternalAddress { get; init; }

    /// <summary>The member's latest monitoring sample (CPU, memory, disk, network); null until its agent sent one.</summary>
    public InstanceSample? Latest { get; init; }
}

/// <summary>Something that happened to a cluster that its owner should see (a reservation about to end, a rollback).</summary>
public sealed record ClusterEvent
{
    public DateTimeOffset At { get; init; }
    public required string Kind { get; init; }
    public required string Message { get; init; }
}

/// <summary>Body of POST /clusters.</summary>
public sealed record ClustersPost
{
    public string? Name { get; init; }

    /// <summary>Compute nodes, 1 to 64.</summary>
    public int? Nodes { get; init; }
    public string? FrontendImage { get; init; }
    public int? FrontendCpus { get; init; }
    public string? FrontendMemory { get; init; }
    public string? NodeImage { get; init; }
    public int? NodeCpus { get; init; }
    public string? NodeMemory { get; init; }

    /// <summary>Subnet of the private network; by default kumod picks a free /24 in 10.224.0.0/11.</summary>
    public string? Subnet { get; init; }

    /// <summary>An existing NAT network of the project for the frontend's outside address; by default kumod makes one.</summary>
    public string? Network { get; init; }

    /// <summary>Frontend port reachable from outside through a node port forward (default 22; 0 for none).</summary>
    public int? ExposePort { get; init; }

    /// <summary>Reserve for a window instead of creating now (UTC; both or only End, which means "from now").</summary>
    public DateTimeOffset? Start { get; init; }
    public DateTimeOffset? End { get; init; }
}

/// <summary>Body of POST /clusters/{name}/scale.</summary>
public sealed record ClusterScale
{
    public int? Nodes { get; init; }
}

/// <summary>What a reservation holds capacity for. Persisted; never rename a value.</summary>
public static class ReservationKinds
{
    /// <summary>A virtual cluster (kumo cluster create --start/--end).</summary>
    public const string Cluster = "cluster";

    /// <summary>A single VM (kumo vm create --start/--end); the VM has the reservation's name.</summary>
    public const string Vm = "vm";
}

/// <summary>A reservation: capacity held for a cluster or a single VM during a window (GET /reservations).</summary>
public sealed record Reservation
{
    public required string Name { get; init; }

    /// <summary><see cref="ReservationKinds"/>: cluster or vm.</summary>
    public string Kind { get; init; } = ReservationKinds.Cluster;
    public required string Project { get; init; }
    public string? Owner { get; init; }
    public DateTimeOffset Start { get; init; }
    public DateTimeOffset End { get; init; }

    /// <summary>The cluster's state (scheduled, creating, ready, ending, ended, failed ...).</summary>
    public required string State { get; init; }
    public string? Node { get; init; }
    public int Cpus { get; init; }
    public long MemoryBytes { get; init; }
    public IReadOnlyList<ClusterEvent> Events { get; init; } = [];
}
