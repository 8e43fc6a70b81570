using Kumo.Agent.Consoles;
using Kumo.Agent.Images;
using Kumo.Agent.Qemu;
using Kumo.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Reconcile;

/// <summary>
/// Converges one instance: reads the desired state, observes the guest, acts on the difference, reports. One loop
/// per instance keeps actions on an instance in order while instances proceed in parallel. Every step is
/// idempotent, so a crash at any point is repaired by the next pass.
/// </summary>
internal sealed partial class InstanceWorker(
    string id, IVmDriver driver, ImageStore images, StatusReporter reporter, ConsoleHub consoles, VolumeManager volumes,
    AgentOptions options, ILogger logger, Networking.NetworkManager networks)
{
    private readonly SemaphoreSlim _kick = new(0, 1);
    private volatile DesiredInstance? _desired;
    private volatile bool _hasDesired;
    private volatile ReadyChannel? _channel;
    private int _linkPid;
    private int _readyPid;
    private int _watchedPid;
    private DateTime _watchedSince;
    private long _failedGeneration = -1;
    private int _launchedPid;
    private volatile string _debugError = "";
    private string? _debugFailedFor;

    /// <summary>
    /// An adopted guest (found running by a restarted agent) is asked for readiness again; until it answers, its
    /// last reported state stands instead of flapping to "starting" for the few milliseconds the answer takes.
    /// </summary>
    private static readonly TimeSpan AdoptionGrace = TimeSpan.FromSeconds(5);

    public string Id => id;

    /// <summary>Null means "not assigned to this node any more": stop and remove it.</summary>
    public void SetDesired(DesiredInstance? desired)
    {
        _desired = desired;
        _hasDesired = true;
        Kick();
    }

    public void Kick()
    {
        try
        {
            if (_kick.CurrentCount == 0) _kick.Release();
        }
        catch (SemaphoreFullException)
        {
        }
    }

    /// <summary>Runs until the instance is removed from this node.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _kick.WaitAsync(options.ResyncInterval, ct);
                if (!_hasDesired) continue;
                if (await ConvergeAsync(ct)) return;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogConvergeFailed(id, e);
                await ReportAsync(InstanceStates.Error, e.Message, _desired?.BootGeneration ?? 0, ct);
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
        }
    }

    /// <returns>True when the instance is gone from this node and the worker can end.</returns>
    private async Task<bool> ConvergeAsync(CancellationToken ct)
    {
        var d = _desired;
        var obs = driver.Inspect(id);
        if (d is null || d.Power == PowerStates.Deleted)
        {
            if (obs.Running)
            {
                await ReportAsync(InstanceStates.Stopping, "powering off for delete", obs.BootedGeneration, ct);
                await driver.StopAsync(id, null, force: true, TimeSpan.Zero, ct);
            }
            await consoles.CloseAsync(id);
            // Taps first: the network is torn down once none is left on its bridge.
            await networks.DetachAsync(id, ct);
            await driver.DeleteAsync(id, ct);
            volumes.SetInUse(id, []);
            await reporter.ReportAsync(new InstanceStatus { Id = id, State = InstanceStates.Stopped, Gone = true, Message = "deleted" }, ct);
            LogDeleted(id, d is null ? "no longer assigned to this node" : "deleted");
            return true;
        }

        if (await MigrationAsync(d, obs, ct)) return false;

        if (!obs.DiskExists)
        {
            await ReportAsync(InstanceStates.Creating, "creating disk", d.BootGeneration, ct);
            var spec0 = await SpecAsync(d, ct);
            await driver.EnsureDiskAsync(spec0, ct);
        }

        if (d.Power == PowerStates.Stopped)
        {
            if (obs.Running)
            {
                var force = d.StopMode == StopModes.Force;
                await ReportAsync(InstanceStates.Stopping, force ? "powering off (forced)" : "asking the guest to power off", obs.BootedGeneration, ct);
                await driver.StopAsync(id, _channel, force, options.StopGracePeriod, ct);
                _snapshots = null;
            }
            await SnapshotsAsync(d, running: false, obs.BootedGeneration, ct);
            await VolumesAsync(d, running: false, ct);
            await ReportAsync(InstanceStates.Stopped, "stopped", obs.BootedGeneration, ct);
            return false;
        }

        // Desired: running.
        if (obs.Running && obs.BootedGeneration < d.BootGeneration)
        {
            await ReportAsync(InstanceStates.Stopping, "restarting: asking the guest to power off", obs.BootedGeneration, ct);
            await driver.StopAsync(id, _channel, force: false, options.StopGracePeriod, ct);
            obs = driver.Inspect(id);
        }
        if (!obs.Running)
        {
            if (obs.BootedGeneration >= d.BootGeneration && obs.BootedGeneration > 0)
            {
                // It ran the requested boot and then stopped: the guest powered itself off (or was killed).
                await SnapshotsAsync(d, running: false, obs.BootedGeneration, ct);
                await VolumesAsync(d, running: false, ct);
                await ReportAsync(InstanceStates.Stopped, "the guest stopped on its own", obs.BootedGeneration, ct);
                return false;
            }
            if (_failedGeneration == d.BootGeneration) return false;
            await ReportAsync(InstanceStates.Starting, $"booting ({driver.Accelerator})", d.BootGeneration, ct);
            try
            {
                var spec = await SpecAsync(d, ct);
                await driver.LaunchAsync(spec with { Nics = await networks.AttachAsync(id, d.Nics, ct) }, d.BootGeneration, ct);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or FileNotFoundException)
            {
                _failedGeneration = d.BootGeneration;
                await ReportAsync(InstanceStates.Error, e.Message, d.BootGeneration, ct);
                return false;
            }
            obs = driver.Inspect(id);
            _launchedPid = obs.Pid ?? 0;
            if (!obs.Running)
            {
                _failedGeneration = d.BootGeneration;
                await ReportAsync(InstanceStates.Error, "qemu exited right after starting; see console.log in the instance directory", d.BootGeneration, ct);
                return false;
            }
        }

        if (await SnapshotsAsync(d, running: true, obs.BootedGeneration, ct))
        {
            // The guest was relaunched under a reverted disk: observe the new process on the next pass.
            Kick();
            return false;
        }
        await VolumesAsync(d, running: true, ct);
        var pid = obs.Pid!.Value;
        // Before readiness, so the console (and its log) has the boot from the first line; again for adopted guests.
        consoles.Get(id)?.Attach(pid);
        await ConvergeDebugAsync(d, ct);
        if (_watchedPid != pid)
        {
            _watchedPid = pid;
            _watchedSince = DateTime.UtcNow;
        }
        EnsureLink(pid, ct);
        if (IsReady(d, pid))
        {
            await ReportAsync(InstanceStates.Running, "guest ready", obs.BootedGeneration, ct);
            return false;
        }
        if (DateTime.UtcNow - _watchedSince > options.ReadyTimeout)
        {
            await ReportAsync(InstanceStates.Error, $"the guest did not signal readiness within {options.ReadyTimeout.TotalSeconds:0}s", obs.BootedGeneration, ct);
            return false;
        }
        if (pid != _launchedPid && DateTime.UtcNow - _watchedSince < AdoptionGrace) return false;
        await ReportAsync(InstanceStates.Starting, "waiting for guest readiness", obs.BootedGeneration, ct);
        return false;
    }

    /// <summary>Starts or stops the gdb stub as kumod asks; a failed endpoint is not retried until kumod asks again.</summary>
    private async Task ConvergeDebugAsync(DesiredInstance d, CancellationToken ct)
    {
        var want = string.IsNullOrEmpty(d.DebugEndpoint) ? null : d.DebugEndpoint;
        if (want is null) _debugFailedFor = null;
        if (want == driver.DebugEndpoint(id) || (want is not null && want == _debugFailedFor)) return;
        try
        {
            await driver.SetDebugAsync(id, want, ct);
            _debugError = "";
        }
        catch (Exception e) when (e is InvalidOperationException or QmpException or IOException or System.Net.Sockets.SocketException)
        {
            LogDebugFailed(id, want ?? "none", e.Message);
            _debugError = e.Message;
            _debugFailedFor = want;
        }
    }

    private bool IsReady(DesiredInstance d, int pid) => d.Readiness switch
    {
        ReadinessModes.None => true,
        ReadinessModes.Timeout => DateTime.UtcNow - _watchedSince >= options.ReadyDelay,
        _ => Volatile.Read(ref _readyPid) == pid,
    };

    /// <summary>Keeps one connection to the guest's readiness port per QEMU process; its EOF means QEMU exited.</summary>
    private void EnsureLink(int pid, CancellationToken ct)
    {
        if (Interlocked.Exchange(ref _linkPid, pid) == pid) return;
        _ = Task.Run(() => LinkAsync(pid, ct), ct);
    }

    private async Task LinkAsync(int pid, CancellationToken ct)
    {
        try
        {
            await using var channel = await driver.ConnectReadyAsync(id, ct);
            _channel = channel;
            // The boot-time marker can be lost if nobody was connected; asking again is always answered.
            await channel.SendAsync("ping", ct);
            while (await channel.ReadLineAsync(ct) is { } line)
            {
                if (line == ReadyChannel.ReadyLine && Volatile.Read(ref _readyPid) != pid)
                {
                    Volatile.Write(ref _readyPid, pid);
                    Kick();
                }
            }
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException)
        {
        }
        finally
        {
            _channel = null;
            Interlocked.CompareExchange(ref _linkPid, 0, pid);
            Kick();
        }
    }

    private async Task<VmSpec> SpecAsync(DesiredInstance d, CancellationToken ct)
    {
        var progress = new Progress<string>(m => _ = ReportAsync(InstanceStates.Creating, m, d.BootGeneration, ct));
        var image = await images.ResolveAsync(d.Image, d.ImageId, d.ImageSha256, d.Readiness, progress, ct);
        var seed = d.ImageSshKeys.Length > 0 || d.ImagePasswordHash.Length > 0
            ? new NoCloudSeed(d.Id, d.Name, d.ImageSshKeys, d.ImagePasswordHash)
            : null;
        return new VmSpec(d.Id, d.Name, d.Cpus, d.MemoryBytes, d.DiskBytes, image) { Volumes = await LaunchVolumesAsync(d, ct), Seed = seed, DomainTemplate = d.DomainTemplate is { Length: > 0 } t ? t : null };
    }

    private Task ReportAsync(string state, string message, long generation, CancellationToken ct) =>
        reporter.ReportAsync(WithMigration(WithVolumes(WithSnapshots(new InstanceStatus
        {
            Id = id,
            State = state,
            Message = message,
            BootGeneration = generation,
            // Only a guest that runs has a stub; the file of a stopped one is stale until the next launch removes it.
            DebugEndpoint = state is InstanceStates.Running or InstanceStates.Starting ? driver.DebugEndpoint(id) ?? "" : "",
            DebugError = _debugError,
        }))), ct);

    [LoggerMessage(LogLevel.Warning, "instance {Id}: converge failed")]
    private partial void LogConvergeFailed(string id, Exception e);

    [LoggerMessage(LogLevel.Warning, "instance {Id}: gdb stub {Endpoint} failed: {Reason}")]
    private partial void LogDebugFailed(string id, string endpoint, string reason);

    [LoggerMessage(LogLevel.Information, "instance {Id} removed from this node ({Why})")]
    private partial void LogDeleted(string id, string why);
}
