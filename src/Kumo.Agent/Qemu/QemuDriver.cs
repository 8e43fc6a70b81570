using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Qemu;

/// <summary>
/// Runs qemu-system-x86_64 directly. Every guest is daemonized (own session, reparented away from the agent), so
/// killing or restarting the agent leaves guests running; the pid file, QMP socket and boot-generation file in the
/// instance directory let a restarted agent adopt them instead of starting duplicates.
/// </summary>
public sealed partial class QemuDriver(string stateDir, string accelerator, ILogger<QemuDriver> logger, string qemuBinary = "qemu-system-x86_64")
    : IVmDriver
{
    public string Name => "qemu";
    public string Accelerator { get; } = accelerator;
    public string InstancesDir { get; } = Path.Combine(stateDir, "instances");

    public string DirOf(string id) => Path.Combine(InstancesDir, id);
    private string Disk(string id) => Path.Combine(DirOf(id), "disk.qcow2");
    public string DiskPath(string id) => Disk(id);
    private string PidFile(string id) => Path.Combine(DirOf(id), "qemu.pid");
    private string GenerationFile(string id) => BootGenerationFile.In(DirOf(id));
    public string QmpSocket(string id) => Path.Combine(DirOf(id), "qmp.sock");
    public string ReadySocket(string id) => Path.Combine(DirOf(id), "ready.sock");

    /// <summary>The agent's console socket (see <see cref="Consoles.GuestConsole"/>); QEMU's own is <see cref="QemuSerialSocket"/>.</summary>
    public string SerialSocket(string id) => Path.Combine(DirOf(id), "serial.sock");

    /// <summary>QEMU serves the serial port here to one client: the agent.</summary>
    public string QemuSerialSocket(string id) => Path.Combine(DirOf(id), "serial-qemu.sock");

    /// <summary>The cloud-init NoCloud seed (see <see cref="NoCloudSeed"/>).</summary>
    private string SeedImage(string id) => Path.Combine(DirOf(id), "seed.iso");

    public string ConsoleLog(string id) => Path.Combine(DirOf(id), "console.log");

    /// <summary>The endpoint the running QEMU's gdb stub was started on; a new QEMU has none (removed at launch).</summary>
    private string DebugFile(string id) => Path.Combine(DirOf(id), "debug-endpoint");

    public Consoles.ConsolePaths? ConsoleOf(string id) =>
        Directory.Exists(DirOf(id)) ? new Consoles.ConsolePaths(QemuSerialSocket(id), SerialSocket(id), ConsoleLog(id)) : null;

    public IReadOnlyList<string> ListLocal() =>
        Directory.Exists(InstancesDir)
            ? Directory.GetDirectories(InstancesDir).Select(Path.GetFileName).OfType<string>().Where(n => !n.StartsWith('.')).ToList()
            : [];

    public VmObservation Inspect(string id)
    {
        var dir = DirOf(id);
        int? pid = null;
        if (File.Exists(PidFile(id)) && int.TryParse(File.ReadAllText(PidFile(id)).Trim(), CultureInfo.InvariantCulture, out var p)
            && ProcessRunner.IsAlive(p, QmpSocket(id)))
            pid = p;
        return new VmObservation(File.Exists(Disk(id)) && Directory.Exists(dir), pid, BootGenerationFile.Read(GenerationFile(id), alive: pid is not null));
    }

    public async Task EnsureDiskAsync(VmSpec spec, CancellationToken ct)
    {
        var disk = Disk(spec.Id);
        if (File.Exists(disk)) return;
        Directory.CreateDirectory(DirOf(spec.Id));
        // Create under a temporary name and rename, so a crash never leaves a half-made disk that looks complete.
        var tmp = disk + ".tmp";
        var args = new List<string> { "create", "-q", "-f", "qcow2" };
        if (spec.Image.BaseDisk is { } baseDisk)
            args.AddRange(["-b", baseDisk, "-F", "qcow2"]);
        args.AddRange([tmp, spec.DiskBytes.ToString(CultureInfo.InvariantCulture)]);
        var r = await ProcessRunner.RunAsync("qemu-img", args, ct);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"qemu-img create failed: {r.Stderr.Trim()}");
        File.Move(tmp, disk, overwrite: true);
    }

    public async Task LaunchAsync(VmSpec spec, long generation, CancellationToken ct)
    {
        var id = spec.Id;
        foreach (var stale in new[] { PidFile(id), QmpSocket(id), ReadySocket(id), QemuSerialSocket(id), DebugFile(id) })
            File.Delete(stale);
        // Record the generation before launching: if the agent dies right after, the adopted guest is known.
        await BootGenerationFile.MarkPendingAsync(GenerationFile(id), generation, ct);
        if (spec.Seed is { } seed) await seed.EnsureAsync(SeedImage(id), ct);
        var args = BuildArgs(spec);
        var r = await ProcessRunner.RunAsync(qemuBinary, args, ct, DirOf(id));
        if (r.ExitCode != 0)
        {
            await BootGenerationFile.MarkFailedAsync(GenerationFile(id), generation);
            throw new InvalidOperationException($"qemu failed to start: {FirstLines(r.Stderr)}");
        }
        await BootGenerationFile.MarkBootedAsync(GenerationFile(id), generation, ct);
        LogLaunched(spec.Name, id, Accelerator);
    }

    internal List<string> BuildArgs(VmSpec spec)
    {
        var id = spec.Id;
        var accel = Accelerator == "kvm" ? "kvm" : "tcg";
        var args = new List<string>
        {
            "-name", $"kumo-{spec.Name},debug-threads=on",
            "-machine", "q35",
            "-accel", accel,
            "-cpu", "max",
            "-smp", spec.Cpus.ToString(CultureInfo.InvariantCulture),
            "-m", $"{spec.MemoryBytes / (1024 * 1024)}M",
            "-nodefaults", "-display", "none", "-vga", "none",
            "-drive", $"file={Disk(id)},if=virtio,format=qcow2,cache=writeback,node-name={RootNode}",
            "-device", "virtio-serial-pci",
            "-chardev", $"socket,id=rdy,path={ReadySocket(id)},server=on,wait=off",
            "-device", "virtserialport,chardev=rdy,name=kumo.ready",
            // The agent is this socket's one client and keeps the log itself (GuestConsole), capped in size.
            "-chardev", $"socket,id=ser,path={QemuSerialSocket(id)},server=on,wait=off",
            "-serial", "chardev:ser",
            "-qmp", $"unix:{QmpSocket(id)},server=on,wait=off",
            "-pidfile", PidFile(id),
            "-daemonize",
        };
        if (spec.Nics is { Count: > 0 } nics)
        {
            for (var i = 0; i < nics.Count; i++)
            {
                args.AddRange(["-netdev", $"tap,id=net{i},ifname={nics[i].Tap},script=no,downscript=no",
                    "-device", $"virtio-net-pci,netdev=net{i},mac={nics[i].Mac}"]);
            }
        }
        else
        {
            args.AddRange(["-nic", "user,model=virtio-net-pci"]);
        }
        if (spec.Seed is not null)
            args.AddRange(["-drive", $"file={SeedImage(id)},if=virtio,format=raw,readonly=on,media=disk"]);
        AddVolumeArgs(args, spec.Volumes);
        if (spec.Incoming is { } incoming) args.AddRange(["-incoming", $"tcp:{incoming}"]);
        if (spec.Image.Kernel is { } kernel)
        {
            args.AddRange(["-kernel", kernel, "-append", spec.Image.Cmdline]);
            if (spec.Image.Initrd is { } initrd) args.AddRange(["-initrd", initrd]);
        }
        return args;
    }

    public async Task<ReadyChannel> ConnectReadyAsync(string id, CancellationToken ct) =>
        await ReadyChannel.ConnectAsync(ReadySocket(id), ct);

    public async Task StopAsync(string id, ReadyChannel? channel, bool force, TimeSpan gracePeriod, CancellationToken ct)
    {
        var pid = Inspect(id).Pid;
        if (pid is null) return;
        if (!force)
        {
            try
            {
                if (channel is not null)
                    await channel.SendAsync("poweroff", ct);
                else
                    await QmpAsync(id, "system_powerdown", ct);
                if (await ProcessRunner.WaitExitAsync(pid.Value, gracePeriod, ct)) return;
                LogGraceExpired(id, gracePeriod.TotalSeconds);
            }
            catch (Exception e) when (e is IOException or QmpException or System.Net.Sockets.SocketException)
            {
                LogGracefulFailed(id, e.Message);
            }
        }
        try
        {
            await QmpAsync(id, "quit", ct);
            if (await ProcessRunner.WaitExitAsync(pid.Value, TimeSpan.FromSeconds(5), ct)) return;
        }
        catch (Exception e) when (e is IOException or QmpException or System.Net.Sockets.SocketException)
        {
            LogGracefulFailed(id, e.Message);
        }
        try
        {
            System.Diagnostics.Process.GetProcessById(pid.Value).Kill();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // Already gone.
        }
        await ProcessRunner.WaitExitAsync(pid.Value, TimeSpan.FromSeconds(5), ct);
    }

    public string? DebugEndpoint(string id) => File.Exists(DebugFile(id)) ? File.ReadAllText(DebugFile(id)).Trim() : null;

    /// <remarks>Through the human monitor (QMP has no gdbserver command); its answer is text, checked for success.</remarks>
    public async Task SetDebugAsync(string id, string? endpoint, CancellationToken ct)
    {
        string command;
        if (endpoint is null)
        {
            command = "gdbserver none";
        }
        else
        {
            var colon = endpoint.LastIndexOf(':');
            var host = endpoint[..colon];
            command = $"gdbserver tcp:{(host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host)}:{endpoint[(colon + 1)..]}";
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        await using var qmp = await QmpClient.ConnectAsync(QmpSocket(id), timeout.Token);
        var answer = (await qmp.ExecuteAsync("human-monitor-command", new System.Text.Json.Nodes.JsonObject { ["command-line"] = command }, timeout.Token))
            ?.GetValue<string>()?.Trim() ?? "";
        if (endpoint is null)
        {
            File.Delete(DebugFile(id));
            return;
        }
        if (!answer.Contains("Waiting for gdb connection", StringComparison.Ordinal))
            throw new InvalidOperationException(answer.Length > 0 ? answer : "QEMU did not say the stub listens");
        await AtomicFile.WriteAsync(DebugFile(id), endpoint, ct);
        LogDebugStub(id, endpoint);
    }

    public async Task DeleteAsync(string id, CancellationToken ct)
    {
        if (Inspect(id).Running) await StopAsync(id, null, force: true, TimeSpan.Zero, ct);
        var dir = DirOf(id);
        if (!Directory.Exists(dir)) return;
        // Rename first so a crash half-way through never leaves a directory that looks like a live instance.
        var trash = Path.Combine(InstancesDir, $".deleting-{id}-{Guid.NewGuid():N}");
        Directory.Move(dir, trash);
        Directory.Delete(trash, recursive: true);
    }

    /// <summary>Removes leftovers of deletes interrupted by a crash.</summary>
    public void CleanTrash()
    {
        if (!Directory.Exists(InstancesDir)) return;
        foreach (var d in Directory.GetDirectories(InstancesDir, ".deleting-*"))
            Directory.Delete(d, recursive: true);
    }

    private async Task QmpAsync(string id, string command, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        await using var qmp = await QmpClient.ConnectAsync(QmpSocket(id), timeout.Token);
        try
        {
            await qmp.ExecuteAsync(command, null, timeout.Token);
        }
        catch (QmpException) when (command == "quit")
        {
            // QEMU may close the socket before answering quit.
        }
    }

    private static string FirstLines(string s) => string.Join(" | ", s.Split('\n', StringSplitOptions.RemoveEmptyEntries).Take(3));

    [LoggerMessage(LogLevel.Information, "launched qemu for {Name} ({Id}) with {Accel}")]
    private partial void LogLaunched(string name, string id, string accel);

    [LoggerMessage(LogLevel.Information, "gdb stub of {Id} listens on {Endpoint}")]
    private partial void LogDebugStub(string id, string endpoint);

    [LoggerMessage(LogLevel.Warning, "guest {Id} did not power off within {Seconds}s; forcing")]
    private partial void LogGraceExpired(string id, double seconds);

    [LoggerMessage(LogLevel.Warning, "graceful stop of {Id} failed: {Reason}")]
    private partial void LogGracefulFailed(string id, string reason);
}
