namespace Kumo.Core;

/// <summary>A snapshot of an instance's root disk (qcow2 internal snapshot), with or without the guest's RAM.</summary>
public sealed record Snapshot
{
    public required string Name { get; init; }
    public required string Instance { get; init; }

    /// <summary>True when the snapshot holds the running guest's RAM and device state: restoring it resumes the guest there.</summary>
    public bool Memory { get; init; }

    public required string State { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>Body of POST /instances/{name}/snapshots.</summary>
public sealed record SnapshotsPost
{
    public string? Name { get; init; }

    /// <summary>Include RAM state. Default: yes when the VM is running, no (disk-only) when it is stopped.</summary>
    public bool? Memory { get; init; }
}

/// <summary>An extra qcow2 disk that is its own resource: created, attached to a VM, detached, resized and deleted.</summary>
public sealed record Volume
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Project { get; init; }
    public long SizeBytes { get; init; }

    /// <summary>The node holding the volume's file; null until it is first attached.</summary>
    public string? Node { get; init; }

    /// <summary>The VM it is attached to, if any.</summary>
    public string? AttachedTo { get; init; }

    public required string State { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>Body of POST /volumes.</summary>
public sealed record VolumesPost
{
    public string? Name { get; init; }

    /// <summary>Size as a size string ("2G") or plain bytes.</summary>
    public string? Size { get; init; }
}

/// <summary>Body of POST /volumes/{name}/attach, /detach and /resize.</summary>
public sealed record VolumeAction
{
    /// <summary>The VM to attach to or detach from.</summary>
    public string? Instance { get; init; }

    /// <summary>For resize: the new size (volumes only grow).</summary>
    public string? Size { get; init; }
}

/// <summary>Snapshot states. Persisted strings: never rename one.</summary>
public static class SnapshotStates
{
    public const string Creating = "creating";
    public const string Ready = "ready";
    public const string Deleting = "deleting";
}

/// <summary>Volume states. Persisted strings: never rename one.</summary>
public static class VolumeStates
{
    /// <summary>Not attached to any VM.</summary>
    public const string Available = "available";
    public const string Attaching = "attaching";
    public const string Attached = "attached";
    public const string Detaching = "detaching";
    public const string Deleting = "deleting";
}
