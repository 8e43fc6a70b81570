using Kumo.Agent.Qemu;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Reconcile;

/// <summary>
/// The instance's volume attachments. A stopped guest's attachments are configuration (plugged in at its next
/// launch); a running guest's are hot-plugged and unplugged until its PCI topology matches the desired list.
/// </summary>
internal sealed partial class InstanceWorker
{
    /// <summary>Volume ids attached as last observed; null until known.</summary>
    private volatile IReadOnlyList<string>? _attached;

    /// <summary>Failed attaches (true) and detaches (false), kept while that is still what kumod asks for.</summary>
    private readonly Dictionary<(string VolumeId, bool Attach), string> _volumeErrors = [];

    private async Task VolumesAsync(DesiredInstance d, bool running, CancellationToken ct)
    {
        var wanted = d.Volumes.ToDictionary(v => v.VolumeId, v => v.Name, StringComparer.Ordinal);
        lock (_volumeErrors)
        {
            foreach (var key in _volumeErrors.Keys.Where(k => wanted.ContainsKey(k.VolumeId) != k.Attach).ToList()) _volumeErrors.Remove(key);
        }
        if (!running)
        {
            foreach (var v in d.Volumes) await volumes.EnsureAsync(v.VolumeId, ct);
            volumes.SetInUse(id, []);
            _attached = [.. wanted.Keys];
            return;
        }
        Dictionary<string, int> ports;
        try
        {
            ports = new Dictionary<string, int>(await driver.AttachedVolumesAsync(id, ct), StringComparer.Ordinal);
        }
        catch (Exception e) when (e is QmpException or IOException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            LogVolumeFailed(id, "(list)", e.Message);
            return;
        }
        foreach (var (volumeId, name) in wanted.Where(w => !ports.ContainsKey(w.Key) && !HasVolumeError((w.Key, true))))
        {
            try
            {
                if (!await volumes.EnsureAsync(volumeId, ct)) continue;
                var free = Enumerable.Range(0, QemuDriver.VolumePorts).Where(p => !ports.ContainsValue(p)).Select(p => (int?)p).FirstOrDefault()
                    ?? throw new InvalidOperationException($"no free PCIe root port: a VM takes at most {QemuDriver.VolumePorts} volumes");
                await driver.HotPlugAsync(id, volumeId, name, free, ct);
                ports[volumeId] = free;
                LogVolume(id, volumeId, "hot-plugged");
            }
            catch (Exception e) when (e is QmpException or IOException or InvalidOperationException)
            {
                LogVolumeFailed(id, volumeId, e.Message);
                lock (_volumeErrors) _volumeErrors[(volumeId, true)] = e.Message;
            }
        }
        foreach (var volumeId in ports.Keys.Where(k => !wanted.ContainsKey(k) && !HasVolumeError((k, false))).ToList())
        {
            try
            {
                await driver.UnplugAsync(id, volumeId, ct);
                ports.Remove(volumeId);
                LogVolume(id, volumeId, "unplugged");
            }
            catch (Exception e) when (e is QmpException or IOException or InvalidOperationException)
            {
                LogVolumeFailed(id, volumeId, e.Message);
                lock (_volumeErrors) _volumeErrors[(volumeId, false)] = e.Message;
            }
        }
        volumes.SetInUse(id, ports.Keys);
        _attached = [.. ports.Keys];
    }

    /// <summary>The volumes to plug in at launch (their files made first).</summary>
    private async Task<List<VolumeAttachment>> LaunchVolumesAsync(DesiredInstance d, CancellationToken ct)
    {
        var list = new List<VolumeAttachment>();
        foreach (var v in d.Volumes)
        {
            if (await volumes.EnsureAsync(v.VolumeId, ct)) list.Add(new VolumeAttachment(v.VolumeId, v.Name));
        }
        return list;
    }

    private bool HasVolumeError((string, bool) key)
    {
        lock (_volumeErrors) return _volumeErrors.ContainsKey(key);
    }

    private InstanceStatus WithVolumes(InstanceStatus status)
    {
        if (_attached is not { } list) return status;
        status.VolumesListed = true;
        status.Volumes.AddRange(list.Select(v => new AttachmentStatus { VolumeId = v, Attached = true }));
        lock (_volumeErrors)
        {
            status.Volumes.AddRange(_volumeErrors.Where(e => !list.Contains(e.Key.VolumeId) || !e.Key.Attach)
                .Select(e => new AttachmentStatus { VolumeId = e.Key.VolumeId, Attached = list.Contains(e.Key.VolumeId), Error = e.Value }));
        }
        return status;
    }

    [LoggerMessage(LogLevel.Information, "instance {Id}: volume {Volume} {What}")]
    private partial void LogVolume(string id, string volume, string what);

    [LoggerMessage(LogLevel.Warning, "instance {Id}: volume {Volume} failed: {Reason}")]
    private partial void LogVolumeFailed(string id, string volume, string reason);
}
