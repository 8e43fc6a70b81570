using System.Globalization;
using System.Text.Json.Nodes;

namespace Kumo.Agent.Qemu;

/// <summary>
/// Internal qcow2 snapshots of the root disk (format node "kumo-root"). A running guest is snapshotted through QMP:
/// snapshot-save/snapshot-load jobs for RAM state, blockdev-snapshot-internal-sync for disk only. A stopped guest's
/// disk goes through qemu-img. Only the root disk is listed in the jobs' devices, so volumes stay out of snapshots.
/// </summary>
public sealed partial class QemuDriver
{
    public const string RootNode = "kumo-root";

    public async Task<IReadOnlyList<DiskSnapshot>> ListSnapshotsAsync(string id, CancellationToken ct)
    {
        if (Inspect(id).Running)
        {
            var blocks = await QmpResultAsync(id, "query-block", null, ct) as JsonArray ?? [];
            var root = blocks.OfType<JsonObject>().FirstOrDefault(b => b["inserted"]?["node-name"]?.GetValue<string>() == RootNode)
                ?? throw new InvalidOperationException($"the guest has no block node {RootNode} (started by an older agent?)");
            return Parse(root["inserted"]?["image"]?["snapshots"] as JsonArray);
        }
        var r = await ProcessRunner.RunAsync("qemu-img", ["info", "--output=json", Disk(id)], ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"qemu-img info failed: {r.Stderr.Trim()}");
        return Parse(JsonNode.Parse(r.Stdout)?["snapshots"] as JsonArray);

        static List<DiskSnapshot> Parse(JsonArray? list) => list is null
            ? []
            : list.OfType<JsonObject>()
                .Select(s => new DiskSnapshot(s["name"]!.GetValue<string>(), (s["vm-state-size"]?.GetValue<long>() ?? 0) > 0))
                .ToList();
    }

    /// <summary>Makes a snapshot: with RAM only when asked and the guest runs; disk-only otherwise.</summary>
    public async Task CreateSnapshotAsync(string id, string name, bool memory, CancellationToken ct)
    {
        if (Inspect(id).Running)
        {
            if (memory)
                await RunJobAsync(id, "snapshot-save", name, ct);
            else
                await QmpResultAsync(id, "blockdev-snapshot-internal-sync", new JsonObject { ["device"] = RootNode, ["name"] = name }, ct);
            return;
        }
        await QemuImgSnapshotAsync("-c", name, id, ct);
    }

    public async Task DeleteSnapshotAsync(string id, string name, CancellationToken ct)
    {
        if (Inspect(id).Running)
            await QmpResultAsync(id, "blockdev-snapshot-delete-internal-sync", new JsonObject { ["device"] = RootNode, ["name"] = name }, ct);
        else
            await QemuImgSnapshotAsync("-d", name, id, ct);
    }

    /// <summary>Loads a RAM snapshot into the running guest: disk, RAM and devices go back; the guest keeps running.</summary>
    public Task LoadSnapshotAsync(string id, string name, CancellationToken ct) => RunJobAsync(id, "snapshot-load", name, ct);

    /// <summary>Reverts a stopped guest's disk to a snapshot (no QMP command loads a disk-only snapshot into a running guest).</summary>
    public Task RevertDiskAsync(string id, string name, CancellationToken ct) => QemuImgSnapshotAsync("-a", name, id, ct);

    /// <summary>The last restore generation applied to this instance and its error, from a file that survives agent restarts.</summary>
    public (long Generation, string Error) RestoredGeneration(string id)
    {
        var file = Path.Combine(DirOf(id), "restored-generation");
        if (!File.Exists(file)) return (0, "");
        var text = File.ReadAllText(file);
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        var number = space < 0 ? text : text[..space];
        return long.TryParse(number.Trim(), CultureInfo.InvariantCulture, out var g) ? (g, space < 0 ? "" : text[(space + 1)..]) : (0, "");
    }

    public Task SetRestoredGenerationAsync(string id, long generation, string error, CancellationToken ct) =>
        AtomicFile.WriteAsync(Path.Combine(DirOf(id), "restored-generation"), $"{generation.ToString(CultureInfo.InvariantCulture)} {error}".TrimEnd(), ct);

    private async Task QemuImgSnapshotAsync(string flag, string name, string id, CancellationToken ct)
    {
        var r = await ProcessRunner.RunAsync("qemu-img", ["snapshot", flag, name, Disk(id)], ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"qemu-img snapshot {flag} {name} failed: {r.Stderr.Trim()}");
    }

    /// <summary>Runs snapshot-save or snapshot-load as a QMP job and waits for it to conclude; the job is dismissed either way.</summary>
    private async Task RunJobAsync(string id, string command, string tag, CancellationToken ct)
    {
        var job = $"kumo-{command}-{Guid.NewGuid():N}"[..40];
        await using var qmp = await QmpClient.ConnectAsync(QmpSocket(id), ct);
        await qmp.ExecuteAsync(command, new JsonObject
        {
            ["job-id"] = job,
            ["tag"] = tag,
            ["vmstate"] = RootNode,
            ["devices"] = new JsonArray(RootNode),
        }, ct);
        while (true)
        {
            var jobs = await qmp.ExecuteAsync("query-jobs", null, ct) as JsonArray ?? [];
            var mine = jobs.OfType<JsonObject>().FirstOrDefault(j => j["id"]?.GetValue<string>() == job)
                ?? throw new InvalidOperationException($"{command}: job {job} vanished");
            if (mine["status"]?.GetValue<string>() == "concluded")
            {
                await qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = job }, ct);
                if (mine["error"]?.GetValue<string>() is { } error) throw new QmpException($"{command}: {error}");
                return;
            }
            await Task.Delay(50, ct);
        }
    }

    private async Task<JsonNode?> QmpResultAsync(string id, string command, JsonObject? arguments, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await using var qmp = await QmpClient.ConnectAsync(QmpSocket(id), timeout.Token);
        return await qmp.ExecuteAsync(command, arguments, timeout.Token);
    }
}

/// <summary>One internal snapshot of a root disk; <paramref name="Memory"/> when it holds RAM state.</summary>
public sealed record DiskSnapshot(string Name, bool Memory);
