using System.Collections.Concurrent;
using System.Globalization;
using Kumo.Agent.Qemu;
using Kumo.Core;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Libvirt;

/// <summary>
/// Runs VMs made from an admin's domain template through libvirtd. Every domain is named kumo-ID and carries Kumo's
/// label (instance id and node) in its &lt;metadata&gt;, so a restarted agent finds its domains in libvirt and
/// adopts the running ones instead of defining or starting them again; a domain labelled for another node is never
/// touched. Files (the qcow2 overlay, console and readiness sockets) live in the instance's directory, as with
/// <see cref="QemuDriver"/>; libvirt's QEMU must be able to use them (qemu.conf: user root or dynamic_ownership).
/// </summary>
/// <remarks>Snapshots, volumes, live migration and gdb stubs are QEMU-driver features for now: they are refused here.</remarks>
public sealed partial class LibvirtDriver(Virsh virsh, string stateDir, string nodeName, string accelerator, ILogger<LibvirtDriver> logger)
    : IVmDriver
{
    private const string NotYet = "the libvirt driver does not support this yet (snapshots, volumes, migration and gdb stubs need the qemu driver)";

    private readonly ConcurrentDictionary<string, int> _pids = new(StringComparer.Ordinal);
    private volatile IReadOnlyList<string> _labelled = [];

    public string Name => "libvirt";
    public string Accelerator { get; } = accelerator;
    public string InstancesDir { get; } = Path.Combine(stateDir, "libvirt");

    public string DirOf(string id) => Path.Combine(InstancesDir, id);
    public static string DomainOf(string id) => $"kumo-{id}";
    private string Disk(string id) => Path.Combine(DirOf(id), "disk.qcow2");
    private string GenerationFile(string id) => BootGenerationFile.In(DirOf(id));
    private string DomainFile(string id) => Path.Combine(DirOf(id), "domain.xml");
    public string ReadySocket(string id) => Path.Combine(DirOf(id), "ready.sock");
    private string QemuSerialSocket(string id) => Path.Combine(DirOf(id), "serial-qemu.sock");

    public Consoles.ConsolePaths? ConsoleOf(string id) =>
        Directory.Exists(DirOf(id))
            ? new Consoles.ConsolePaths(QemuSerialSocket(id), Path.Combine(DirOf(id), "serial.sock"), Path.Combine(DirOf(id), "console.log"))
            : null;

    /// <summary>Instance directories plus the domains libvirt holds with this node's label (read by <see cref="RefreshAsync"/>).</summary>
    public IReadOnlyList<string> ListLocal()
    {
        var dirs = Directory.Exists(InstancesDir)
            ? Directory.GetDirectories(InstancesDir).Select(Path.GetFileName).OfType<string>().Where(n => !n.StartsWith('.'))
            : [];
        return dirs.Concat(_labelled).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>Reads which domains in libvirt carry this node's label; run at start so nothing Kumo made is orphaned.</summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        var names = (await virsh.CheckAsync(ct, "list", "--all", "--name")).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var mine = new List<string>();
        foreach (var name in names.Where(n => n.StartsWith("kumo-", StringComparison.Ordinal)))
        {
            var r = await virsh.RunAsync(ct, "dumpxml", "--inactive", name);
            if (r.ExitCode == 0 && DomainTemplates.LabelOf(r.Stdout) is { } label && label.Node == nodeName && DomainOf(label.Id) == name)
                mine.Add(label.Id);
        }
        _labelled = mine;
        LogFound(mine.Count, virsh.Uri);
    }

    public VmObservation Inspect(string id)
    {
        var pid = FindPid(id);
        return new VmObservation(File.Exists(Disk(id)), pid, BootGenerationFile.Read(GenerationFile(id), alive: pid is not null));
    }

    /// <summary>
    /// The domain's QEMU process, found by the -name libvirt gives it. Reading /proc keeps Inspect cheap and works
    /// whatever run directory (or mount namespace) libvirtd keeps its pid files in.
    /// </summary>
    private int? FindPid(string id)
    {
        var marker = $"guest={DomainOf(id)},";
        if (_pids.TryGetValue(id, out var known) && ProcessRunner.IsAlive(known, marker)) return known;
        _pids.TryRemove(id, out _);
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), CultureInfo.InvariantCulture, out var pid)) continue;
            if (ProcessRunner.IsAlive(pid, marker))
            {
                _pids[id] = pid;
                return pid;
            }
        }
        return null;
    }

    /// <summary>Makes the overlay and defines the domain, so a VM created stopped is listed (shut off) by libvirt too.</summary>
    public async Task EnsureDiskAsync(VmSpec spec, CancellationToken ct)
    {
        var disk = Disk(spec.Id);
        if (!File.Exists(disk))
        {
            Directory.CreateDirectory(DirOf(spec.Id));
            var tmp = disk + ".tmp";
            var args = new List<string> { "create", "-q", "-f", "qcow2" };
            if (spec.Image.BaseDisk is { } baseDisk) args.AddRange(["-b", baseDisk, "-F", "qcow2"]);
            args.AddRange([tmp, spec.DiskBytes.ToString(CultureInfo.InvariantCulture)]);
            var r = await ProcessRunner.RunAsync("qemu-img", args, ct);
            if (r.ExitCode != 0) throw new InvalidOperationException($"qemu-img create failed: {r.Stderr.Trim()}");
            File.Move(tmp, disk, overwrite: true);
        }
        await DefineAsync(spec, ct);
    }

    private async Task DefineAsync(VmSpec spec, CancellationToken ct)
    {
        var id = spec.Id;
        if (spec.DomainTemplate is not { Length: > 0 } template)
            throw new InvalidOperationException("the libvirt driver runs only VMs made from a domain template");
        var existing = await virsh.RunAsync(ct, "dumpxml", "--inactive", DomainOf(id));
        if (existing.ExitCode == 0 && DomainTemplates.LabelOf(existing.Stdout) is var label && (label is null || label.Value.Node != nodeName))
            throw new InvalidOperationException($"libvirt already has a domain {DomainOf(id)} that is not this node's ({label?.Node ?? "no Kumo label"}); refusing to replace it");
        var xml = DomainTemplates.Render(template, new DomainTemplates.RenderInput(
            DomainOf(id), spec.Cpus, spec.MemoryBytes, Disk(id), id, nodeName, ReadySocket(id), QemuSerialSocket(id),
            spec.Image.Kernel, spec.Image.Kernel is null ? null : spec.Image.Initrd, spec.Image.Kernel is null ? null : spec.Image.Cmdline));
        var tmp = DomainFile(id) + ".tmp";
        await File.WriteAllTextAsync(tmp, xml, ct);
        File.Move(tmp, DomainFile(id), overwrite: true);
        await virsh.CheckAsync(ct, "define", DomainFile(id));
    }

    public async Task LaunchAsync(VmSpec spec, long generation, CancellationToken ct)
    {
        var id = spec.Id;
        if (spec.Nics is { Count: > 0 })
            throw new InvalidOperationException("a templated VM's network is fixed by its template; Kumo networks cannot be attached");
        await BootGenerationFile.MarkPendingAsync(GenerationFile(id), generation, ct);
        try
        {
            await DefineAsync(spec, ct);
            foreach (var stale in new[] { ReadySocket(id), QemuSerialSocket(id) }) File.Delete(stale);
            await virsh.CheckAsync(ct, "start", DomainOf(id));
        }
        catch (InvalidOperationException)
        {
            await BootGenerationFile.MarkFailedAsync(GenerationFile(id), generation);
            throw;
        }
        await BootGenerationFile.MarkBootedAsync(GenerationFile(id), generation, ct);
        LogStarted(spec.Name, id, DomainOf(id));
    }

    public Task<ReadyChannel> ConnectReadyAsync(string id, CancellationToken ct) => ReadyChannel.ConnectAsync(ReadySocket(id), ct);

    /// <summary>The guest's own poweroff (readiness channel) or ACPI first, unless forced; then virsh destroy.</summary>
    public async Task StopAsync(string id, ReadyChannel? channel, bool force, TimeSpan gracePeriod, CancellationToken ct)
    {
        var pid = FindPid(id);
        if (pid is null) return;
        if (!force)
        {
            try
            {
                if (channel is not null)
                    await channel.SendAsync("poweroff", ct);
                else
                    await virsh.CheckAsync(ct, "shutdown", DomainOf(id));
                if (await ProcessRunner.WaitExitAsync(pid.Value, gracePeriod, ct))
                {
                    await WaitShutOffAsync(id, ct);
                    return;
                }
                LogGraceExpired(id, gracePeriod.TotalSeconds);
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or System.Net.Sockets.SocketException)
            {
                LogGracefulFailed(id, e.Message);
            }
        }
        var r = await virsh.RunAsync(ct, "destroy", DomainOf(id));
        if (r.ExitCode != 0 && !Virsh.IsNoDomain(r) && ProcessRunner.IsAlive(pid.Value))
            throw new InvalidOperationException($"virsh destroy failed: {Virsh.Message(r)}");
        await ProcessRunner.WaitExitAsync(pid.Value, TimeSpan.FromSeconds(10), ct);
        await WaitShutOffAsync(id, ct);
    }

    /// <summary>
    /// libvirtd notices QEMU's exit a moment after the process is gone ("in shutdown" until then); a stop is done when
    /// libvirt says "shut off" too, so `virsh list --all` never disagrees with a stopped VM. Bounded: a slow libvirtd
    /// does not hold the worker.
    /// </summary>
    private async Task WaitShutOffAsync(string id, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            var r = await virsh.RunAsync(ct, "domstate", DomainOf(id));
            if (r.ExitCode != 0 || r.Stdout.Trim() == "shut off") return;
            await Task.Delay(50, ct);
        }
    }

    public async Task DeleteAsync(string id, CancellationToken ct)
    {
        if (FindPid(id) is not null) await StopAsync(id, null, force: true, TimeSpan.Zero, ct);
        var existing = await virsh.RunAsync(ct, "dumpxml", "--inactive", DomainOf(id));
        if (existing.ExitCode == 0 && DomainTemplates.LabelOf(existing.Stdout) is { } label && label.Node == nodeName)
        {
            var r = await virsh.RunAsync(ct, "undefine", DomainOf(id));
            if (r.ExitCode != 0 && !Virsh.IsNoDomain(r)) throw new InvalidOperationException($"virsh undefine failed: {Virsh.Message(r)}");
        }
        _labelled = _labelled.Where(l => l != id).ToList();
        var dir = DirOf(id);
        if (!Directory.Exists(dir)) return;
        var trash = Path.Combine(InstancesDir, $".deleting-{id}-{Guid.NewGuid():N}");
        Directory.Move(dir, trash);
        Directory.Delete(trash, recursive: true);
    }

    public void CleanTrash()
    {
        if (!Directory.Exists(InstancesDir)) return;
        foreach (var d in Directory.GetDirectories(InstancesDir, ".deleting-*")) Directory.Delete(d, recursive: true);
    }

    public async Task<string> RunStateAsync(string id, CancellationToken ct) =>
        (await virsh.CheckAsync(ct, "domstate", DomainOf(id))).Trim() switch
        {
            "shut off" => "shutdown",
            var s => s,
        };

    public string? DebugEndpoint(string id) => null;

    public Task SetDebugAsync(string id, string? endpoint, CancellationToken ct) =>
        endpoint is null ? Task.CompletedTask : throw new InvalidOperationException(NotYet);

    public Task<IReadOnlyList<DiskSnapshot>> ListSnapshotsAsync(string id, CancellationToken ct) => Task.FromResult<IReadOnlyList<DiskSnapshot>>([]);

    public Task CreateSnapshotAsync(string id, string name, bool memory, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task DeleteSnapshotAsync(string id, string name, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task LoadSnapshotAsync(string id, string name, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task RevertDiskAsync(string id, string name, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public (long Generation, string Error) RestoredGeneration(string id) => (0, "");

    public Task SetRestoredGenerationAsync(string id, long generation, string error, CancellationToken ct) => Task.CompletedTask;

    public IReadOnlyList<string> ListVolumes() => [];

    public Task EnsureVolumeAsync(string volumeId, long sizeBytes, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task<long> VolumeSizeAsync(string volumeId, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task ResizeVolumeAsync(string volumeId, long sizeBytes, string? runningInstance, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public void DeleteVolume(string volumeId)
    {
    }

    public Task<IReadOnlyDictionary<string, int>> AttachedVolumesAsync(string id, CancellationToken ct) =>
        Task.FromResult<IReadOnlyDictionary<string, int>>(new Dictionary<string, int>());

    public Task HotPlugAsync(string id, string volumeId, string name, int port, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task UnplugAsync(string id, string volumeId, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task StartMigrationAsync(string id, string target, long? maxBandwidth, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task<MigrationProgress> QueryMigrationAsync(string id, CancellationToken ct) => throw new InvalidOperationException(NotYet);

    public Task CancelMigrationAsync(string id, CancellationToken ct) => Task.CompletedTask;

    public Task ResumeAsync(string id, CancellationToken ct) => virsh.CheckAsync(ct, "resume", DomainOf(id));

    public string? MigrationMarker(string id) => null;

    public void SetMigrationMarker(string id, string? marker)
    {
        if (marker is not null) throw new InvalidOperationException(NotYet);
    }

    [LoggerMessage(LogLevel.Information, "libvirt at {Uri}: {Count} domains carry this node's label")]
    private partial void LogFound(int count, string uri);

    [LoggerMessage(LogLevel.Information, "started libvirt domain {Domain} for {Name} ({Id})")]
    private partial void LogStarted(string name, string id, string domain);

    [LoggerMessage(LogLevel.Warning, "guest {Id} did not power off within {Seconds}s; forcing")]
    private partial void LogGraceExpired(string id, double seconds);

    [LoggerMessage(LogLevel.Warning, "graceful stop of {Id} failed: {Reason}")]
    private partial void LogGracefulFailed(string id, string reason);
}
