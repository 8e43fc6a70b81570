using Kumo.Agent.Qemu;
using Kumo.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Reconcile;

/// <summary>
/// Snapshots and restores of the instance's root disk, converged like everything else: the desired snapshots are
/// compared with the disk's actual list, and a restore generation is applied once (recorded in the instance
/// directory, so an agent restart neither repeats nor forgets one).
/// </summary>
internal sealed partial class InstanceWorker
{
    /// <summary>The disk's snapshot list as last read; null until read (after a start or an action).</summary>
    private volatile IReadOnlyList<DiskSnapshot>? _snapshots;

    /// <summary>Failed creates (false) and deletes (true) by name, kept while that is still what kumod asks for.</summary>
    private readonly Dictionary<(string Name, bool Deleting), string> _snapshotErrors = [];

    private (long Generation, string Error) _restored = (-1, "");

    /// <summary>Carries out snapshot work; returns true when the guest was relaunched (a disk restore of a running VM).</summary>
    private async Task<bool> SnapshotsAsync(DesiredInstance d, bool running, long bootedGeneration, CancellationToken ct)
    {
        if (_restored.Generation < 0) _restored = driver.RestoredGeneration(id);
        if (_snapshots is null && !await ListSnapshotsAsync(ct)) return false;
        var wanted = d.Snapshots.Select(s => (s.Name, s.Deleting)).ToHashSet();
        lock (_snapshotErrors)
        {
            foreach (var key in _snapshotErrors.Keys.Where(k => !wanted.Contains(k)).ToList()) _snapshotErrors.Remove(key);
        }
        var acted = false;
        foreach (var s in d.Snapshots)
        {
            var exists = _snapshots!.Any(x => x.Name == s.Name);
            if (exists != s.Deleting || HasError((s.Name, s.Deleting))) continue;
            acted = true;
            try
            {
                if (s.Deleting)
                {
                    await ReportAsync(running ? InstanceStates.Running : InstanceStates.Stopped, $"deleting snapshot {s.Name}", bootedGeneration, ct);
                    await driver.DeleteSnapshotAsync(id, s.Name, ct);
                }
                else
                {
                    await ReportAsync(running ? InstanceStates.Running : InstanceStates.Stopped,
                        s.Memory && running ? $"saving snapshot {s.Name} (disk and RAM)" : $"saving snapshot {s.Name} (disk)", bootedGeneration, ct);
                    await driver.CreateSnapshotAsync(id, s.Name, s.Memory, ct);
                }
                LogSnapshot(id, s.Deleting ? "deleted" : "created", s.Name);
            }
            catch (Exception e) when (e is QmpException or InvalidOperationException or IOException)
            {
                LogSnapshotFailed(id, s.Name, e.Message);
                lock (_snapshotErrors) _snapshotErrors[(s.Name, s.Deleting)] = e.Message;
            }
        }
        if (acted && !await ListSnapshotsAsync(ct)) return false;

        if (d.RestoreGeneration <= _restored.Generation || d.RestoreSnapshot.Length == 0) return false;
        var snap = _snapshots!.FirstOrDefault(x => x.Name == d.RestoreSnapshot);
        var error = "";
        var relaunched = false;
        try
        {
            if (snap is null)
                error = $"snapshot {d.RestoreSnapshot} is not on the disk";
            else if (running && snap.Memory)
            {
                await ReportAsync(InstanceStates.Running, $"restoring snapshot {snap.Name} (disk and RAM)", bootedGeneration, ct);
                await driver.LoadSnapshotAsync(id, snap.Name, ct);
            }
            else if (running)
            {
                // A disk-only snapshot cannot be loaded under a running guest: stop it, revert the disk, boot again.
                await ReportAsync(InstanceStates.Stopping, $"restoring snapshot {snap.Name}: stopping the guest", bootedGeneration, ct);
                await driver.StopAsync(id, null, force: true, TimeSpan.Zero, ct);
                try
                {
                    await driver.RevertDiskAsync(id, snap.Name, ct);
                }
                finally
                {
                    await ReportAsync(InstanceStates.Starting, $"restored snapshot {snap.Name}; booting", bootedGeneration, ct);
                    await driver.LaunchAsync(await SpecAsync(d, ct), bootedGeneration, ct);
                    relaunched = true;
                }
            }
            else
                await driver.RevertDiskAsync(id, snap.Name, ct);
        }
        catch (Exception e) when (e is QmpException or InvalidOperationException or IOException)
        {
            error = e.Message;
        }
        if (error.Length > 0) LogSnapshotFailed(id, d.RestoreSnapshot, error);
        else LogSnapshot(id, "restored", d.RestoreSnapshot);
        await driver.SetRestoredGenerationAsync(id, d.RestoreGeneration, error, ct);
        _restored = (d.RestoreGeneration, error);
        return relaunched;
    }

    /// <summary>Reads the disk's snapshot list; a failure is logged and leaves the list unknown (not reported).</summary>
    private async Task<bool> ListSnapshotsAsync(CancellationToken ct)
    {
        try
        {
            _snapshots = await driver.ListSnapshotsAsync(id, ct);
            return true;
        }
        catch (Exception e) when (e is QmpException or InvalidOperationException or IOException or System.Net.Sockets.SocketException)
        {
            _snapshots = null;
            LogSnapshotFailed(id, "(list)", e.Message);
            return false;
        }
    }

    private bool HasError((string, bool) key)
    {
        lock (_snapshotErrors) return _snapshotErrors.ContainsKey(key);
    }

    /// <summary>Adds what is known of the disk's snapshots and the last restore to a status report.</summary>
    private InstanceStatus WithSnapshots(InstanceStatus status)
    {
        if (_snapshots is { } list)
        {
            status.SnapshotsListed = true;
            status.Snapshots.AddRange(list.Select(s => new SnapshotStatus { Name = s.Name, Memory = s.Memory, Present = true }));
            lock (_snapshotErrors)
                status.Snapshots.AddRange(_snapshotErrors.Select(e => new SnapshotStatus { Name = e.Key.Name, Error = e.Value, Present = list.Any(s => s.Name == e.Key.Name) }));
        }
        if (_restored.Generation > 0)
        {
            status.RestoredGeneration = _restored.Generation;
            status.RestoreError = _restored.Error;
        }
        return status;
    }

    [LoggerMessage(LogLevel.Information, "instance {Id}: snapshot {Name} {What}")]
    private partial void LogSnapshotImpl(string id, string name, string what);

    private void LogSnapshot(string id, string what, string name) => LogSnapshotImpl(id, name, what);

    [LoggerMessage(LogLevel.Warning, "instance {Id}: snapshot {Name} failed: {Reason}")]
    private partial void LogSnapshotFailed(string id, string name, string reason);
}
