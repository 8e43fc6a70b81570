using System.Diagnostics;
using System.Globalization;
using Docker.DotNet;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Containers;

/// <summary>What the engine was configured with after probing this host, for logs and tests.</summary>
public sealed record EngineQuirks(string Runtime, string CgroupLayout, string? NofileUlimit, string? NprocUlimit);

/// <summary>
/// The node's container engine: a <c>podman system service</c> started and supervised by the agent, serving the
/// Docker Engine API on a Unix socket. Its storage (--root/--runroot) lives in the agent's state dir, so two agents on
/// one host never share containers and deleting the state dir leaves nothing behind. The host's quirks are probed and
/// written into a Kumo-owned containers.conf passed through CONTAINERS_CONF, so nobody has to configure podman.
/// </summary>
public sealed partial class ContainerEngine(string stateDir, ILogger<ContainerEngine> logger) : IAsyncDisposable
{
    private readonly SemaphoreSlim _startLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private Process? _service;
    private Task? _supervisor;
    private DockerClient? _client;

    public string Dir { get; } = Path.Combine(stateDir, "containers");
    public string StorageRoot => Path.Combine(Dir, "storage");
    public string RunRoot => Path.Combine(Dir, "run");
    public string ConfigFile => Path.Combine(Dir, "containers.conf");
    private string PidFile => Path.Combine(Dir, "podman.pid");

    /// <summary>Unix socket paths are limited to 108 bytes; a deep state dir gets a short socket path in /tmp instead.</summary>
    public string SocketPath
    {
        get
        {
            var p = Path.Combine(Dir, "podman.sock");
            if (p.Length < 100) return p;
            var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(p)))[..16];
            return Path.Combine(Path.GetTempPath(), $"kumo-podman-{hash}.sock");
        }
    }

    public EngineQuirks? Quirks { get; private set; }

    /// <summary>Starts the service if it is not running and returns a client for it.</summary>
    public async Task<DockerClient> ClientAsync(CancellationToken ct)
    {
        if (_client is { } c && _service is { HasExited: false }) return c;
        await _startLock.WaitAsync(ct);
        try
        {
            if (_client is { } again && _service is { HasExited: false }) return again;
            await StartAsync(ct);
            return _client!;
        }
        finally
        {
            _startLock.Release();
        }
    }

    private async Task StartAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(Dir);
        Quirks ??= Probe();
        await File.WriteAllTextAsync(ConfigFile, ContainersConf(Quirks), ct);
        // Only the first start may find a service left by a killed agent; later starts replace our own.
        if (_service is null) await StopOrphanAsync(ct);
        if (File.Exists(SocketPath)) File.Delete(SocketPath);
        var psi = new ProcessStartInfo("podman")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in PodmanArgs()) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "system", "service", "--time=0", $"unix://{SocketPath}" }) psi.ArgumentList.Add(a);
        psi.Environment["CONTAINERS_CONF"] = ConfigFile;
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start podman");
        p.StandardInput.Close();
        _ = DrainAsync(p.StandardOutput);
        _ = DrainAsync(p.StandardError);
        await File.WriteAllTextAsync(PidFile, p.Id.ToString(CultureInfo.InvariantCulture), ct);
        _service = p;
        _client = new DockerClientConfiguration(new Uri($"unix://{SocketPath}")).CreateClient();
        await WaitReadyAsync(p, _client, ct);
        LogStarted(p.Id, SocketPath, Quirks.Runtime, Quirks.CgroupLayout, Quirks.NofileUlimit ?? "host default");
        _supervisor ??= SuperviseAsync(_stopping.Token);
    }

    /// <summary>The global podman options every podman call of this agent uses (the service and the CLI helpers).</summary>
    public IReadOnlyList<string> PodmanArgs() =>
    [
        "--root", StorageRoot, "--runroot", RunRoot, "--tmpdir", Path.Combine(Dir, "tmp"),
        "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", Quirks?.Runtime ?? "runc",
    ];

    /// <summary>Runs a podman CLI command against this engine's storage (image import needs the CLI's --change).</summary>
    public async Task<ProcessResult> PodmanAsync(IEnumerable<string> args, CancellationToken ct, string? stdinFile = null)
    {
        var psi = new ProcessStartInfo("podman") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in PodmanArgs().Concat(args)) psi.ArgumentList.Add(a);
        psi.Environment["CONTAINERS_CONF"] = ConfigFile;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start podman");
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        if (stdinFile is not null)
        {
            await using var input = File.OpenRead(stdinFile);
            await input.CopyToAsync(p.StandardInput.BaseStream, ct);
        }
        p.StandardInput.Close();
        await p.WaitForExitAsync(ct);
        return new ProcessResult(p.ExitCode, await stdout, await stderr);
    }

    private static async Task WaitReadyAsync(Process p, DockerClient client, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            if (p.HasExited) throw new InvalidOperationException($"podman system service exited with code {p.ExitCode} right after starting");
            try
            {
                await client.System.PingAsync(ct);
                return;
            }
            catch (Exception e) when (e is HttpRequestException or IOException or System.Net.Sockets.SocketException or DockerApiException or TimeoutException)
            {
                if (DateTime.UtcNow > deadline) throw new InvalidOperationException($"podman system service did not answer on its socket within 60 s: {e.Message}");
                await Task.Delay(50, ct);
            }
        }
    }

    /// <summary>Restarts the service when it dies; containers are unaffected (conmon keeps them).</summary>
    private async Task SuperviseAsync(CancellationToken ct)
    {
        var backoff = TimeSpan.FromMilliseconds(200);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (_service is { } p) await p.WaitForExitAsync(ct);
                LogExited(_service?.ExitCode ?? -1);
                await Task.Delay(backoff, ct);
                backoff = TimeSpan.FromMilliseconds(Math.Min(10_000, backoff.TotalMilliseconds * 2));
                await _startLock.WaitAsync(ct);
                try
                {
                    if (_service is null || _service.HasExited) await StartAsync(ct);
                }
                finally
                {
                    _startLock.Release();
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or System.ComponentModel.Win32Exception)
            {
                LogRestartFailed(e);
            }
        }
    }

    /// <summary>A service left by a killed agent holds the socket: stop it (its containers keep running).</summary>
    private async Task StopOrphanAsync(CancellationToken ct)
    {
        if (!File.Exists(PidFile)) return;
        if (!int.TryParse(await File.ReadAllTextAsync(PidFile, ct), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) return;
        if (!ProcessRunner.IsAlive(pid, SocketPath)) return;
        try
        {
            using var old = Process.GetProcessById(pid);
            old.Kill();
            await old.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromSeconds(10), ct);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or TimeoutException)
        {
        }
    }

    /// <summary>
    /// crun refuses hybrid cgroup layouts (v1 controllers plus a cgroup2 tree) and runc works everywhere Debian ships
    /// it, so runc is chosen when present. Without CAP_SYS_RESOURCE the OCI runtime cannot raise RLIMIT_NOFILE/NPROC to
    /// podman's defaults (1048576), so the defaults are lowered to what this process may grant.
    /// </summary>
    public static EngineQuirks Probe()
    {
        var runtime = OnPath("runc") ? "runc" : "crun";
        var layout = CgroupLayout();
        var (nofileHard, nprocHard) = HardLimits();
        const long podmanDefault = 1_048_576;
        string? nofile = nofileHard < podmanDefault && !HasCapSysResource() ? Limit(Math.Min(1024, nofileHard)) : null;
        string? nproc = nprocHard < podmanDefault && !HasCapSysResource() ? Limit(Math.Min(4096, nprocHard)) : null;
        return new EngineQuirks(runtime, layout, nofile, nproc);

        static string Limit(long v) => $"{v.ToString(CultureInfo.InvariantCulture)}:{v.ToString(CultureInfo.InvariantCulture)}";
    }

    public static string ContainersConf(EngineQuirks q)
    {
        var ulimits = new[] { q.NofileUlimit is null ? null : $"\"nofile={q.NofileUlimit}\"", q.NprocUlimit is null ? null : $"\"nproc={q.NprocUlimit}\"" }
            .Where(u => u is not null);
        return $"""
            # Written by kumo-agent from what it probed on this host; do not edit (it is rewritten at every start).
            [containers]
            default_ulimits = [{string.Join(", ", ulimits)}]

            [engine]
            runtime = "{q.Runtime}"
            cgroup_manager = "cgroupfs"
            events_logger = "file"
            """ + "\n";
    }

    private static string CgroupLayout()
    {
        var mounts = File.Exists("/proc/self/mounts") ? File.ReadAllLines("/proc/self/mounts") : [];
        var v1 = mounts.Any(l => l.Split(' ') is [_, var m, "cgroup", ..] && m.StartsWith("/sys/fs/cgroup/", StringComparison.Ordinal));
        var v2 = mounts.Any(l => l.Split(' ') is [_, _, "cgroup2", ..]);
        return (v1, v2) switch { (true, true) => "hybrid", (true, false) => "v1", _ => "v2" };
    }

    private static (long Nofile, long Nproc) HardLimits()
    {
        long nofile = long.MaxValue, nproc = long.MaxValue;
        foreach (var line in File.ReadLines("/proc/self/limits"))
        {
            var parts = line.Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (parts.Length < 3) continue;
            var hard = long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var h) ? h : long.MaxValue;
            if (parts[0] == "Max open files") nofile = hard;
            if (parts[0] == "Max processes") nproc = hard;
        }
        return (nofile, nproc);
    }

    private static bool HasCapSysResource()
    {
        const int capSysResource = 24;
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith("CapEff:", StringComparison.Ordinal)) continue;
            var caps = ulong.Parse(line[7..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            return (caps & (1UL << capSysResource)) != 0 && CanRaiseNofile();
        }
        return false;
    }

    /// <summary>Having the capability is not enough inside some sandboxes: check that the kernel really allows it.</summary>
    private static bool CanRaiseNofile() => File.Exists("/proc/sys/fs/nr_open")
        && long.TryParse(File.ReadAllText("/proc/sys/fs/nr_open").Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var max)
        && max >= 1_048_576 && HardLimits().Nofile >= 1_048_576;

    private static bool OnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Any(d => File.Exists(Path.Combine(d, exe)));

    private static async Task DrainAsync(StreamReader reader)
    {
        try
        {
            while (await reader.ReadLineAsync() is not null) { }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Stops supervising and forgets the service without stopping it: what an agent killed with -9 leaves behind.
    /// Crash tests use it to hand the state dir to a second engine, as a restarted agent would.
    /// </summary>
    public async Task AbandonAsync()
    {
        await _stopping.CancelAsync();
        if (_supervisor is { } s)
        {
            try { await s; } catch (OperationCanceledException) { }
        }
        _supervisor = null;
        _service?.Dispose();
        _service = null;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        if (_supervisor is { } s)
        {
            try { await s; } catch (OperationCanceledException) { }
        }
        if (_service is { HasExited: false } p)
        {
            // Containers run under conmon, not under the service: stopping it leaves them running.
            p.Kill();
            await p.WaitForExitAsync();
        }
        _service?.Dispose();
        _client?.Dispose();
        _stopping.Dispose();
        _startLock.Dispose();
    }

    [LoggerMessage(LogLevel.Information, "container engine: podman service pid {Pid} on {Socket} (runtime {Runtime}, cgroups {Layout}, nofile {Nofile})")]
    private partial void LogStarted(int pid, string socket, string runtime, string layout, string nofile);

    [LoggerMessage(LogLevel.Warning, "container engine: podman service exited with code {Code}; restarting")]
    private partial void LogExited(int code);

    [LoggerMessage(LogLevel.Warning, "container engine: restarting podman failed")]
    private partial void LogRestartFailed(Exception e);
}
