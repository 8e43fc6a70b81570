using System.Text.Json.Nodes;

namespace Kumo.Agent.Qemu;

/// <summary>
/// Live migration through QMP. The target runs a second QEMU with the same machine and <c>-incoming tcp:HOST:PORT</c>
/// (see <see cref="VmSpec.Incoming"/>); the source is told <c>migrate</c> and polled with <c>query-migrate</c>.
/// </summary>
/// <remarks>
/// Disks: the base image exists on every node (built-in images are built there, imported ones fetched from kumod by
/// checksum), and only the instance's qcow2 overlay is the guest's own. QEMU 7.2 (Debian 12) moves it with block
/// migration in incremental mode (<c>blk</c> + <c>inc</c>): the target starts from a fresh overlay on the same base
/// and receives the overlay's allocated clusters while the guest runs, then the dirty ones with the RAM. It is one QMP
/// command and needs no NBD server or extra ports, unlike drive-mirror to an NBD export on the target (what libvirt
/// does). Block migration is deprecated from QEMU 8.2 and gone in 9.1; a newer QEMU needs the mirror variant.
/// QEMU reopens disks by path when it hands them over, so every path QEMU gets must be absolute (the daemonized
/// process runs in /).
/// </remarks>
public sealed partial class QemuDriver
{
    public async Task<string> RunStateAsync(string id, CancellationToken ct) =>
        (await QmpResultAsync(id, "query-status", null, ct))?["status"]?.GetValue<string>() ?? "unknown";

    public async Task StartMigrationAsync(string id, string target, long? maxBandwidth, CancellationToken ct)
    {
        if (maxBandwidth is { } cap)
            await QmpResultAsync(id, "migrate-set-parameters", new JsonObject { ["max-bandwidth"] = cap }, ct);
        await QmpResultAsync(id, "migrate", new JsonObject { ["uri"] = $"tcp:{target}", ["blk"] = true, ["inc"] = true }, ct);
    }

    public async Task<MigrationProgress> QueryMigrationAsync(string id, CancellationToken ct)
    {
        var r = await QmpResultAsync(id, "query-migrate", null, ct) as JsonObject ?? [];
        static long Long(JsonNode? n) => n?.GetValue<long>() ?? 0;
        var ram = r["ram"];
        var disk = r["disk"];
        return new MigrationProgress(
            r["status"]?.GetValue<string>() ?? "none",
            Long(ram?["transferred"]) + Long(disk?["transferred"]),
            Long(ram?["total"]) + Long(disk?["total"]),
            Long(r["downtime"]),
            Long(r["total-time"]),
            r["error-desc"]?.GetValue<string>());
    }

    public async Task CancelMigrationAsync(string id, CancellationToken ct) => await QmpResultAsync(id, "migrate_cancel", null, ct);

    public async Task ResumeAsync(string id, CancellationToken ct) => await QmpResultAsync(id, "cont", null, ct);

    private string MigrationFile(string id) => Path.Combine(DirOf(id), "migration");

    public string? MigrationMarker(string id) => File.Exists(MigrationFile(id)) ? File.ReadAllText(MigrationFile(id)).Trim() : null;

    /// <remarks>Written (atomically) before QEMU is told anything, so a restarted agent never issues the same migration twice.</remarks>
    public void SetMigrationMarker(string id, string? marker)
    {
        if (marker is null)
        {
            File.Delete(MigrationFile(id));
            return;
        }
        Directory.CreateDirectory(DirOf(id));
        var tmp = MigrationFile(id) + ".tmp";
        File.WriteAllText(tmp, marker);
        File.Move(tmp, MigrationFile(id), overwrite: true);
    }
}
