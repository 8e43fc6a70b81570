using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Instances;
using Kumo.Server.Storage;

namespace Kumo.Server.Images;

/// <summary>The image catalogue. Built-in images live in the 'system' project and are visible to every project.</summary>
public sealed class ImageService(Database db, TimeProvider time)
{
    public const string SystemProject = "system";

    public Task<List<Image>> ListAsync(string? type, CancellationToken ct) =>
        db.ReadAsync(c => c.Query<ImageRow>(
            "SELECT * FROM images WHERE project IN (@project, @system) AND (@type IS NULL OR type = @type) ORDER BY name",
            new { project = InstanceService.DefaultProject, system = SystemProject, type }).Select(r => r.ToApi()).ToList(), ct);

    public async Task<Image> GetAsync(string name, CancellationToken ct) =>
        (await db.ReadAsync(c => c.QueryFirstOrDefault<ImageRow>(
            "SELECT * FROM images WHERE project IN (@project, @system) AND name = @name ORDER BY project = @system",
            new { project = InstanceService.DefaultProject, system = SystemProject, name }), ct))?.ToApi()
        ?? throw ProblemException.NotFound("image", name);

    /// <summary>Makes sure the built-in catalogue rows exist (idempotent, run at start-up).</summary>
    public Task EnsureBuiltInsAsync(CancellationToken ct) => db.WriteAsync(ctx =>
    {
        ctx.Connection.Execute(
            """
            INSERT INTO images (id, name, project, type, readiness, description, built_in, created_at)
            VALUES (@id, 'tiny', @system, 'vm', 'marker', @description, 1, @now)
            ON CONFLICT (project, type, name) DO NOTHING
            """,
            new
            {
                id = Ulid.NewUlid().ToString().ToLowerInvariant(),
                system = SystemProject,
                description = "Debian cloud kernel + busybox initramfs; signals readiness, mounts its disk at /data",
                now = Json.Now(time),
            }, ctx.Transaction);
    }, ct);
}
