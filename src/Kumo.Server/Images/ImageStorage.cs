using System.Security.Cryptography;
using Dapper;
using Kumo.Server.Storage;

namespace Kumo.Server.Images;

/// <summary>
/// kumod's image files: STATE/images/ID.qcow2, written only by rename from STATE/images/.tmp/, so a file under its
/// final name is always complete. Work directories of imports live in .tmp and die with a crash: <see cref="RecoverAsync"/>
/// removes them, and any qcow2 whose catalogue row never got written, at start-up.
/// </summary>
public sealed class ImageStorage(string stateDir)
{
    public string Dir { get; } = Path.Combine(stateDir, "images");
    public string TmpDir => Path.Combine(Dir, ".tmp");

    public string PathOf(string id) => Path.Combine(Dir, id + ".qcow2");

    public string NewWorkDir()
    {
        var d = Path.Combine(TmpDir, Ulid.NewUlid().ToString().ToLowerInvariant());
        Directory.CreateDirectory(d);
        return d;
    }

    public static void DeleteQuietly(string? dir)
    {
        if (dir is null || !Directory.Exists(dir)) return;
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
            // Recovered at the next start.
        }
    }

    public static async Task<string> Sha256Async(string path, CancellationToken ct)
    {
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous | FileOptions.SequentialScan);
        return Convert.ToHexString(await SHA256.HashDataAsync(f, ct)).ToLowerInvariant();
    }

    /// <summary>Removes what interrupted imports left, and fails their operations (kumod restarted under them).</summary>
    public async Task RecoverAsync(Database db, TimeProvider time, CancellationToken ct)
    {
        DeleteQuietly(TmpDir);
        var known = (await db.ReadAsync(c => c.Query<string>("SELECT id FROM images WHERE sha256 IS NOT NULL").ToList(), ct)).ToHashSet(StringComparer.Ordinal);
        if (Directory.Exists(Dir))
        {
            foreach (var f in Directory.GetFiles(Dir, "*.qcow2"))
                if (!known.Contains(Path.GetFileNameWithoutExtension(f))) File.Delete(f);
        }
        await db.WriteAsync(ctx => ctx.Connection.Execute(
            """
            UPDATE operations SET status = 'failed', error = 'kumod restarted while this ran; nothing of it was kept', updated_at = @now
            WHERE kind IN ('image-import', 'image-build') AND status IN ('pending', 'running')
            """, new { now = Json.Now(time) }, ctx.Transaction), ct);
    }
}
