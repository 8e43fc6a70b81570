using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Instances;
using Kumo.Server.Storage;

namespace Kumo.Server.Images;

/// <summary>
/// The image catalogue. Built-in images live in the 'system' project and are visible to every project; imported and
/// built images belong to the project they were made in (images from before projects existed sit in 'default').
/// </summary>
public sealed class ImageService(Database db, ImageStorage storage, TimeProvider time)
{
    public const string SystemProject = "system";

    /// <remarks>The project has already been resolved for the caller (membership checked).</remarks>
    public Task<List<Image>> ListAsync(string project, string? type, CancellationToken ct) =>
        db.ReadAsync(c => c.Query<ImageRow>(
            "SELECT m.*, n.name AS node_name FROM images m LEFT JOIN nodes n ON n.id = m.node_id "
            + "WHERE m.project IN (@project, @default, @system) AND (@type IS NULL OR m.type = @type) ORDER BY m.name",
            new { project, @default = InstanceService.DefaultProject, system = SystemProject, type }).Select(r => r.ToApi()).ToList(), ct);

    public async Task<Image> GetAsync(string project, string name, CancellationToken ct) => (await FindAsync(project, name, ct)).ToApi();

    internal async Task<ImageRow> FindAsync(string project, string name, CancellationToken ct) =>
        await db.ReadAsync(c => c.QueryFirstOrDefault<ImageRow>(
            // The project's own image wins over a shared one of the same name.
            """
            SELECT m.*, n.name AS node_name FROM images m LEFT JOIN nodes n ON n.id = m.node_id
            WHERE m.project IN (@project, @default, @system) AND m.name = @name ORDER BY m.project = @system, m.project = @default
            """,
            new { project, @default = InstanceService.DefaultProject, system = SystemProject, name }), ct)
        ?? throw ProblemException.NotFound("image", name);

    /// <summary>
    /// Removes an image of the project (of <paramref name="type"/> when given: a vm and a container image may share a
    /// name); refused for built-ins and while any instance was made from it. Returns the removed row: a built
    /// container image still has to leave its node's engine.
    /// </summary>
    internal async Task<ImageRow> DeleteAsync(string project, string name, string? type, CancellationToken ct)
    {
        var removed = await db.WriteAsync(ctx =>
        {
            var row = ctx.Connection.QueryFirstOrDefault<ImageRow>(
                """
                SELECT * FROM images WHERE project IN (@project, @default, @system) AND name = @name AND (@type IS NULL OR type = @type)
                ORDER BY project = @system, project = @default
                """,
                new { project, @default = InstanceService.DefaultProject, system = SystemProject, name, type }, ctx.Transaction)
                ?? throw ProblemException.NotFound("image", name);
            if (row.BuiltIn != 0 || row.Project == SystemProject)
                throw ProblemException.InvalidState($"image '{name}' is built in and cannot be removed");
            var users = ctx.Connection.Query<string>(
                "SELECT name FROM instances WHERE image_id = @id OR (image_id IS NULL AND image = @name AND project = @project) ORDER BY name LIMIT 5",
                new { id = row.Id, name, project = row.Project }, ctx.Transaction).ToList();
            if (users.Count > 0)
                throw ProblemException.InvalidState($"image '{name}' is used by instance(s) {string.Join(", ", users)}; delete them first");
            ctx.Connection.Execute("DELETE FROM images WHERE id = @id", new { id = row.Id }, ctx.Transaction);
            return row;
        }, ct);
        // After the commit: a crash before this line leaves a file without a row, which start-up removes.
        File.Delete(storage.PathOf(removed.Id));
        return removed;
    }

    /// <summary>The stored qcow2 of an image a node may fetch: one that an instance assigned to that node was made from.</summary>
    public async Task<(string Path, string Sha256)?> FileForNodeAsync(string nodeId, string imageId, CancellationToken ct)
    {
        var sha = await db.ReadAsync(c => c.QuerySingleOrDefault<string?>(
            """
            SELECT m.sha256 FROM images m
            WHERE m.id = @imageId AND m.sha256 IS NOT NULL
              AND EXISTS (SELECT 1 FROM instances i WHERE i.image_id = m.id
                  AND (i.node_id = @nodeId OR i.id IN (SELECT instance_id FROM migrations WHERE target_node_id = @nodeId)))
            """, new { imageId, nodeId }), ct);
        return sha is null ? null : (storage.PathOf(imageId), sha);
    }

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
        ctx.Connection.Execute(
            """
            INSERT INTO images (id, name, project, type, readiness, description, built_in, created_at)
            VALUES (@id, 'busybox', @system, 'container', 'none', @description, 1, @now)
            ON CONFLICT (project, type, name) DO NOTHING
            """,
            new
            {
                id = Ulid.NewUlid().ToString().ToLowerInvariant(),
                system = SystemProject,
                description = "busybox-static with its applets, built on each node without a registry",
                now = Json.Now(time),
            }, ctx.Transaction);
    }, ct);
}
