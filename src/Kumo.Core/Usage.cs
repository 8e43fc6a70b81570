namespace Kumo.Core;

/// <summary>
/// Usage of one user in one project over a period (GET /usage): allocated (what their instances held while shown
/// running, whatever the guests did with it) and measured (CPU time the guests actually used).
/// </summary>
public sealed record UsageRecord
{
    /// <summary>The owner's name; null for instances without an owner (created before identity) or a deleted user.</summary>
    public string? User { get; init; }

    public string? UserId { get; init; }

    public required string Project { get; init; }

    /// <summary>The period the figures cover, [From, To).</summary>
    public DateTimeOffset From { get; init; }

    public DateTimeOffset To { get; init; }

    /// <summary>Instance-seconds spent running.</summary>
    public double RunningSeconds { get; init; }

    /// <summary>vCPUs × seconds running.</summary>
    public double VcpuSeconds { get; init; }

    /// <summary>Memory in MiB × seconds running.</summary>
    public double MemoryMibSeconds { get; init; }

    /// <summary>Disk size in GiB × hours running.</summary>
    public double DiskGibHours { get; init; }

    /// <summary>
    /// Measured: CPU-seconds the guests' QEMU processes used (vCPUs plus emulation), as sampled by the agents. Kept per
    /// hour; a period cutting through an hour gets a proportional share of it.
    /// </summary>
    public double CpuSeconds { get; init; }
}
