using System.Collections.Concurrent;
using Kumo.Agent.Qemu;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Reconcile;

/// <summary>
/// The node's volume files, converged to kumod's list: made when missing, grown when smaller than asked (through
/// the guest that has one plugged in, so it sees the new size at once), removed once deleted and unplugged. Reports
/// each file's actual size, and "gone" for a deleted one, which finish kumod's operations.
/// </summary>
public sealed partial class VolumeManager(IVmDriver driver, StatusReporter reporter, ILogger<VolumeManager> logger)
{
    private volatile IReadOnlyDictionary<string, DesiredVolume>? _desired;
    private readonly ConcurrentDictionary<string, string> _inUse = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _kick = new(0, 1);

    /// <summary>One file operation at a time: a worker making a file for a launch never races the loop.</summary>
    private readonly SemaphoreSlim _files = new(1, 1);

    public void Apply(IEnumerable<DesiredVolume> volumes)
    {
        _desired = volumes.ToDictionary(v => v.Id, StringComparer.Ordinal);
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

    /// <summary>Makes a volume's file if needed; false while kumod has not (yet) said this node holds it.</summary>
    public async Task<bool> EnsureAsync(string volumeId, CancellationToken ct)
    {
        if (_desired is not { } desired || !desired.TryGetValue(volumeId, out var v) || v.Deleting) return false;
        await _files.WaitAsync(ct);
        try
        {
            await driver.EnsureVolumeAsync(volumeId, v.SizeBytes, ct);
            return true;
        }
        finally
        {
            _files.Release();
        }
    }

    /// <summary>Records which volumes a running guest has plugged in (none when it stopped).</summary>
    public void SetInUse(string instanceId, IEnumerable<string> volumeIds)
    {
        foreach (var kv in _inUse.Where(kv => kv.Value == instanceId).ToList()) _inUse.TryRemove(kv.Key, out _);
        foreach (var v in volumeIds) _inUse[v] = instanceId;
        Kick();
    }

    public async Task RunAsync(TimeSpan resync, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _kick.WaitAsync(resync, ct);
                await ConvergeAsync(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogFailed(e);
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
        }
    }

    private async Task ConvergeAsync(CancellationToken ct)
    {
        // Nothing is removed before kumod has said what this node should hold.
        if (_desired is not { } desired) return;
        var statuses = new List<VolumeStatus>();
        await _files.WaitAsync(ct);
        try
        {
            foreach (var v in desired.Values)
            {
                if (v.Deleting)
                {
                    if (_inUse.ContainsKey(v.Id)) continue;
                    driver.DeleteVolume(v.Id);
                    statuses.Add(new VolumeStatus { Id = v.Id, Gone = true });
                    continue;
                }
                try
                {
                    await driver.EnsureVolumeAsync(v.Id, v.SizeBytes, ct);
                    var size = await driver.VolumeSizeAsync(v.Id, ct);
                    if (size < v.SizeBytes)
                    {
                        await driver.ResizeVolumeAsync(v.Id, v.SizeBytes, _inUse.GetValueOrDefault(v.Id), ct);
                        size = await driver.VolumeSizeAsync(v.Id, ct);
                        LogResized(v.Id, size);
                    }
                    statuses.Add(new VolumeStatus { Id = v.Id, SizeBytes = size });
                }
                catch (Exception e) when (e is InvalidOperationException or QmpException or IOException or System.Net.Sockets.SocketException)
                {
                    statuses.Add(new VolumeStatus { Id = v.Id, Error = e.Message });
                }
            }
            // Files kumod no longer knows at all (removed while this node was away): nothing may be left behind.
            foreach (var id in driver.ListVolumes().Where(id => !desired.ContainsKey(id) && !_inUse.ContainsKey(id)))
                driver.DeleteVolume(id);
        }
        finally
        {
            _files.Release();
        }
        await reporter.ReportVolumesAsync(statuses, ct);
    }

    [LoggerMessage(LogLevel.Warning, "volumes: converge failed")]
    private partial void LogFailed(Exception e);

    [LoggerMessage(LogLevel.Information, "volume {Id} grown to {Bytes} bytes")]
    private partial void LogResized(string id, long bytes);
}
