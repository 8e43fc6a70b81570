using System.Globalization;
using System.Text.Json.Nodes;

namespace Kumo.Agent.Qemu;

/// <summary>
/// Volumes on this node: qcow2 files in STATE/volumes, plugged into guests as virtio-blk-pci devices behind the
/// PCIe root ports every guest gets at launch (kumo-rp0..3; q35 cannot hot-plug onto pcie.0). The guest's own PCI
/// topology, read with query-pci, says what is attached where, so nothing about attachments is kept on the side.
/// </summary>
public sealed partial class QemuDriver
{
    /// <summary>Root ports per guest, i.e. how many volumes one VM can have attached.</summary>
    public const int VolumePorts = 4;

    public string VolumesDir => Path.Combine(Path.GetDirectoryName(InstancesDir)!, "volumes");

    public string VolumePath(string volumeId) => Path.Combine(VolumesDir, volumeId + ".qcow2");

    /// <summary>QEMU node names are at most 31 characters and start with a letter: "kv" + a 26-character id.</summary>
    private static string VolumeNode(string volumeId) => "kv" + volumeId;

    private static string VolumeDevice(string volumeId) => "kd" + volumeId;

    private static string Port(int index) => $"kumo-rp{index.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>virtio-blk serials hold 20 bytes; the guest sees the volume's name there (/sys/block/vdX/serial).</summary>
    private static string Serial(string name) => name.Length <= 20 ? name : name[..20];

    public IReadOnlyList<string> ListVolumes() =>
        Directory.Exists(VolumesDir)
            ? Directory.GetFiles(VolumesDir, "*.qcow2").Select(Path.GetFileNameWithoutExtension).OfType<string>().ToList()
            : [];

    public async Task EnsureVolumeAsync(string volumeId, long sizeBytes, CancellationToken ct)
    {
        var path = VolumePath(volumeId);
        if (File.Exists(path)) return;
        Directory.CreateDirectory(VolumesDir);
        // Made under a temporary name and renamed, so a crash never leaves a half-made volume that looks complete.
        var tmp = path + ".tmp";
        var r = await ProcessRunner.RunAsync("qemu-img", ["create", "-q", "-f", "qcow2", tmp, sizeBytes.ToString(CultureInfo.InvariantCulture)], ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"qemu-img create failed: {r.Stderr.Trim()}");
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>The volume's virtual size; read with a shared lock (-U) because a running guest may hold the file.</summary>
    public async Task<long> VolumeSizeAsync(string volumeId, CancellationToken ct)
    {
        var r = await ProcessRunner.RunAsync("qemu-img", ["info", "-U", "--output=json", "-f", "qcow2", VolumePath(volumeId)], ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"qemu-img info failed: {r.Stderr.Trim()}");
        return JsonNode.Parse(r.Stdout)?["virtual-size"]?.GetValue<long>() ?? 0;
    }

    /// <summary>Grows a volume: through the guest that has it attached (block_resize, seen at once), or with qemu-img.</summary>
    public async Task ResizeVolumeAsync(string volumeId, long sizeBytes, string? runningInstance, CancellationToken ct)
    {
        if (runningInstance is not null && Inspect(runningInstance).Running)
        {
            await QmpResultAsync(runningInstance, "block_resize", new JsonObject { ["node-name"] = VolumeNode(volumeId), ["size"] = sizeBytes }, ct);
            return;
        }
        var r = await ProcessRunner.RunAsync("qemu-img", ["resize", "-q", "-f", "qcow2", VolumePath(volumeId), sizeBytes.ToString(CultureInfo.InvariantCulture)], ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"qemu-img resize failed: {r.Stderr.Trim()}");
    }

    public void DeleteVolume(string volumeId)
    {
        File.Delete(VolumePath(volumeId));
        File.Delete(VolumePath(volumeId) + ".tmp");
    }

    /// <summary>Volume id → root-port index of every volume plugged into the running guest.</summary>
    public async Task<IReadOnlyDictionary<string, int>> AttachedVolumesAsync(string id, CancellationToken ct)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        var buses = await QmpResultAsync(id, "query-pci", null, ct) as JsonArray ?? [];
        foreach (var dev in buses.OfType<JsonObject>().SelectMany(b => (b["devices"] as JsonArray ?? []).OfType<JsonObject>()))
        {
            var qdev = dev["qdev_id"]?.GetValue<string>() ?? "";
            if (!qdev.StartsWith("kumo-rp", StringComparison.Ordinal)
                || !int.TryParse(qdev["kumo-rp".Length..], CultureInfo.InvariantCulture, out var port)) continue;
            foreach (var child in (dev["pci_bridge"]?["devices"] as JsonArray ?? []).OfType<JsonObject>())
            {
                var childId = child["qdev_id"]?.GetValue<string>() ?? "";
                if (childId.StartsWith("kd", StringComparison.Ordinal)) result[childId[2..]] = port;
            }
        }
        return result;
    }

    /// <summary>Plugs a volume into a free root port of the running guest; undoes the block node if the device fails.</summary>
    public async Task HotPlugAsync(string id, string volumeId, string name, int port, CancellationToken ct)
    {
        // A node left by an interrupted plug would make blockdev-add fail as a duplicate.
        await TryQmpAsync(id, "blockdev-del", new JsonObject { ["node-name"] = VolumeNode(volumeId) }, ct);
        await QmpResultAsync(id, "blockdev-add", new JsonObject
        {
            ["driver"] = "qcow2",
            ["node-name"] = VolumeNode(volumeId),
            ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = VolumePath(volumeId) },
        }, ct);
        try
        {
            await QmpResultAsync(id, "device_add", new JsonObject
            {
                ["driver"] = "virtio-blk-pci",
                ["id"] = VolumeDevice(volumeId),
                ["drive"] = VolumeNode(volumeId),
                ["bus"] = Port(port),
                ["serial"] = Serial(name),
            }, ct);
        }
        catch
        {
            await TryQmpAsync(id, "blockdev-del", new JsonObject { ["node-name"] = VolumeNode(volumeId) }, CancellationToken.None);
            throw;
        }
    }

    /// <summary>Asks the guest to release a volume (PCIe hot-unplug), waits until it did, then drops the block node.</summary>
    public async Task UnplugAsync(string id, string volumeId, CancellationToken ct)
    {
        await TryQmpAsync(id, "device_del", new JsonObject { ["id"] = VolumeDevice(volumeId) }, ct);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while ((await AttachedVolumesAsync(id, ct)).ContainsKey(volumeId))
        {
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException("the guest did not release the volume within 30 s (does its kernel support PCIe hot-unplug?)");
            await Task.Delay(100, ct);
        }
        await TryQmpAsync(id, "blockdev-del", new JsonObject { ["node-name"] = VolumeNode(volumeId) }, ct);
    }

    /// <summary>Launch arguments: the root ports, and the volumes attached while the guest was off.</summary>
    private void AddVolumeArgs(List<string> args, IReadOnlyList<VolumeAttachment> volumes)
    {
        for (var i = 0; i < VolumePorts; i++)
            args.AddRange(["-device", $"pcie-root-port,id={Port(i)},chassis={(i + 1).ToString(CultureInfo.InvariantCulture)},slot=0,bus=pcie.0"]);
        for (var i = 0; i < volumes.Count && i < VolumePorts; i++)
        {
            var v = volumes[i];
            args.AddRange(["-blockdev", $"driver=qcow2,node-name={VolumeNode(v.VolumeId)},file.driver=file,file.filename={VolumePath(v.VolumeId)}"]);
            args.AddRange(["-device", $"virtio-blk-pci,id={VolumeDevice(v.VolumeId)},drive={VolumeNode(v.VolumeId)},bus={Port(i)},serial={Serial(v.Name)}"]);
        }
    }

    private async Task TryQmpAsync(string id, string command, JsonObject arguments, CancellationToken ct)
    {
        try
        {
            await QmpResultAsync(id, command, arguments, ct);
        }
        catch (QmpException)
        {
            // Already done (no such node or device): that is the state we wanted.
        }
    }
}

/// <summary>A volume to plug into a guest: its id (file name) and its name (the disk serial the guest sees).</summary>
public sealed record VolumeAttachment(string VolumeId, string Name);
