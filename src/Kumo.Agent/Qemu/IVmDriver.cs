using Kumo.Agent.Images;

namespace Kumo.Agent.Qemu;

/// <param name="Nics">Taps on tenant networks; none means QEMU's user-mode network (outbound NAT only).</param>
public sealed record VmSpec(string Id, string Name, int Cpus, long MemoryBytes, long DiskBytes, ImageFiles Image,
    IReadOnlyList<Networking.VmNic>? Nics = null)
{
    /// <summary>Volumes plugged in at launch.</summary>
    public IReadOnlyList<VolumeAttachment> Volumes { get; init; } = [];

    /// <summary>A cloud-init NoCloud seed attached as a read-only disk (VMs created with SSH keys or a password).</summary>
    public NoCloudSeed? Seed { get; init; }

    /// <summary>Set for the target of a live migration: the guest arrives on this HOST:PORT instead of booting.</summary>
    public string? Incoming { get; init; }

    /// <summary>For the libvirt driver: the admin's domain template the VM was made from.</summary>
    public string? DomainTemplate { get; init; }
}

/// <summary>What is on this node for one instance, read from its directory and /proc.</summary>
public sealed record VmObservation(bool DiskExists, int? Pid, long BootedGeneration)
{
    public bool Running => Pid is not null;
}

/// <summary>
/// A hypervisor driver as the reconciler sees it. QEMU is the first; libvirt arrives with the VM operations issue
/// and must pass the same conformance tests.
/// </summary>
public interface IVmDriver
{
    string Name { get; }

    /// <summary>kvm or tcg, decided once per node.</summary>
    string Accelerator { get; }

    /// <summary>Instance ids that have anything on this node (directories, processes).</summary>
    IReadOnlyList<string> ListLocal();

    VmObservation Inspect(string id);

    /// <summary>Where the instance's serial console lives; null when the instance has no directory on this node.</summary>
    Consoles.ConsolePaths? ConsoleOf(string id);

    /// <summary>Creates the instance's disk if it does not exist yet (idempotent).</summary>
    Task EnsureDiskAsync(VmSpec spec, CancellationToken ct);

    /// <summary>Starts the guest detached from the agent and records which boot generation it is.</summary>
    Task LaunchAsync(VmSpec spec, long generation, CancellationToken ct);

    /// <summary>Connects to the guest's readiness channel (one host connection at a time).</summary>
    Task<ReadyChannel> ConnectReadyAsync(string id, CancellationToken ct);

    /// <summary>Stops the guest: a clean guest power-off first unless forced, then QMP quit, then SIGKILL.</summary>
    Task StopAsync(string id, ReadyChannel? channel, bool force, TimeSpan gracePeriod, CancellationToken ct);

    /// <summary>Where the guest's gdb stub listens now (HOST:PORT), or null.</summary>
    string? DebugEndpoint(string id);

    /// <summary>Starts the guest's gdb stub on HOST:PORT, or stops it (null). Throws with the hypervisor's reason.</summary>
    Task SetDebugAsync(string id, string? endpoint, CancellationToken ct);

    /// <summary>Removes everything of the instance from this node (the guest must be stopped).</summary>
    Task DeleteAsync(string id, CancellationToken ct);

    /// <summary>The root disk's snapshots, read from the running guest or from the disk file.</summary>
    Task<IReadOnlyList<DiskSnapshot>> ListSnapshotsAsync(string id, CancellationToken ct);

    /// <summary>Makes a snapshot of the root disk; with RAM state only if <paramref name="memory"/> and the guest runs.</summary>
    Task CreateSnapshotAsync(string id, string name, bool memory, CancellationToken ct);

    Task DeleteSnapshotAsync(string id, string name, CancellationToken ct);

    /// <summary>Loads a RAM snapshot into the running guest, which keeps running from the saved state.</summary>
    Task LoadSnapshotAsync(string id, string name, CancellationToken ct);

    /// <summary>Reverts the stopped guest's root disk to a snapshot.</summary>
    Task RevertDiskAsync(string id, string name, CancellationToken ct);

    (long Generation, string Error) RestoredGeneration(string id);

    Task SetRestoredGenerationAsync(string id, long generation, string error, CancellationToken ct);

    /// <summary>Ids of the volume files on this node.</summary>
    IReadOnlyList<string> ListVolumes();

    Task EnsureVolumeAsync(string volumeId, long sizeBytes, CancellationToken ct);

    Task<long> VolumeSizeAsync(string volumeId, CancellationToken ct);

    /// <summary>Grows a volume; through <paramref name="runningInstance"/>'s QEMU when that guest has it plugged in.</summary>
    Task ResizeVolumeAsync(string volumeId, long sizeBytes, string? runningInstance, CancellationToken ct);

    void DeleteVolume(string volumeId);

    /// <summary>Volume id to root-port index of the volumes plugged into a running guest.</summary>
    Task<IReadOnlyDictionary<string, int>> AttachedVolumesAsync(string id, CancellationToken ct);

    Task HotPlugAsync(string id, string volumeId, string name, int port, CancellationToken ct);

    Task UnplugAsync(string id, string volumeId, CancellationToken ct);

    /// <summary>The running guest's run state as the hypervisor says (running, paused, inmigrate, postmigrate, ...).</summary>
    Task<string> RunStateAsync(string id, CancellationToken ct);

    /// <summary>Starts a live migration of the running guest, disk overlay included, to HOST:PORT (at most <paramref name="maxBandwidth"/> bytes/s).</summary>
    Task StartMigrationAsync(string id, string target, long? maxBandwidth, CancellationToken ct);

    Task<MigrationProgress> QueryMigrationAsync(string id, CancellationToken ct);

    Task CancelMigrationAsync(string id, CancellationToken ct);

    /// <summary>Lets a guest paused by a migration that kumod called off run again here.</summary>
    Task ResumeAsync(string id, CancellationToken ct);

    /// <summary>"out ID" / "in ID": which migration this node's QEMU was started or told to migrate for (survives agent restarts).</summary>
    string? MigrationMarker(string id);

    void SetMigrationMarker(string id, string? marker);
}

/// <summary>QMP query-migrate, summed over RAM and disk.</summary>
public sealed record MigrationProgress(string Status, long TransferredBytes, long TotalBytes, long DowntimeMs, long TotalMs, string? Error)
{
    public bool Active => Status is "setup" or "active" or "device" or "pre-switchover" or "cancelling" or "wait-unplug";
}
