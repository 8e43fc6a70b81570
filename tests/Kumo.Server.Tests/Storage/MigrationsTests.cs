using Dapper;
using Kumo.Server.Storage;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Tests.Storage;

public sealed class MigrationsTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Open_OnEmptyFile_CreatesTheLatestSchema()
    {
        await using var db = new Database(_dir.File("kumo.db"));

        Assert.Equal(Migrations.Latest, db.SchemaVersion);
        using var c = db.Open();
        Assert.Equal(Migrations.Latest, Migrations.CurrentVersion(c));
        var objects = c.Query<string>("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY name");
        Assert.Equal(["audit", "audit_time", "audit_user", "clusters", "counters", "debug_ports", "domain_templates", "images", "instances", "instances_cluster", "instances_image", "instances_node", "instances_owner", "instances_project", "join_tokens",
            "measured_cursors", "measured_usage", "measured_usage_hour", "migrations", "network_addresses", "network_addresses_instance", "networks", "networks_vni", "node_certificates", "node_certificates_node", "nodes", "operations", "operations_pending", "port_forwards", "port_forwards_instance",
            "project_members", "projects", "quotas", "snapshots", "tokens", "tokens_user", "usage_intervals", "usage_intervals_open", "usage_intervals_owner",
            "usage_intervals_project", "users", "volumes", "volumes_instance", "volumes_node"], objects);
    }

    [Fact]
    public async Task Open_OnVersion1Database_UpgradesInPlaceAndKeepsRows()
    {
        var path = _dir.File("old.db");
        using (var old = OpenRaw(path))
        {
            old.Execute(Migrations.All[0] + "\nPRAGMA user_version = 1;");
            old.Execute(
                """
                INSERT INTO nodes (id, name, health, accelerator, cpus, memory_bytes, version, created_at)
                VALUES ('n1', 'node-a', 'ready', 'kvm', 4, 4294967296, 1, '2026-01-01T00:00:00.0000000+00:00');
                INSERT INTO instances (id, name, project, type, image, cpus, memory_bytes, disk_bytes, node_id, state, desired_power,
                    stop_mode, version, created_at, updated_at)
                VALUES ('i1', 'web', 'default', 'vm', 'tiny', 1, 268435456, 1073741824, 'n1', 'running', 'running',
                    'graceful', 3, '2026-01-01T00:00:00.0000000+00:00', '2026-01-01T00:00:00.0000000+00:00');
                """);
        }

        await using var db = new Database(path);

        Assert.Equal(Migrations.Latest, db.SchemaVersion);
        using var c = db.Open();
        Assert.Equal(Migrations.Latest, Migrations.CurrentVersion(c));
        Assert.Equal("node-a", c.ExecuteScalar<string>("SELECT name FROM nodes WHERE id = 'n1'"));
        var row = c.QuerySingle<(string Name, string State, long Version, string NodeId)>("SELECT name, state, version, node_id FROM instances");
        Assert.Equal(("web", "running", 3L, "n1"), row);
        await new Database(_dir.File("fresh.db")).DisposeAsync();
        Assert.Equal(Schema(_dir.File("fresh.db")), Schema(path));
    }

    [Fact]
    public async Task Open_OnVersion14Database_GivesEveryNetworkItsOwnVniInCreationOrder()
    {
        var path = _dir.File("v14.db");
        using (var old = OpenRaw(path))
        {
            for (var v = 0; v < 14; v++) old.Execute(Migrations.All[v] + $"\nPRAGMA user_version = {v + 1};");
            old.Execute(
                """
                INSERT INTO networks (id, name, project, subnet, created_at) VALUES ('b', 'second', 'default', '10.77.2.0/24', '2026-01-02T00:00:00.0000000+00:00');
                INSERT INTO networks (id, name, project, subnet, created_at) VALUES ('a', 'first', 'default', '10.77.1.0/24', '2026-01-01T00:00:00.0000000+00:00');
                INSERT INTO networks (id, name, project, subnet, created_at) VALUES ('c', 'third', 'other', '10.77.1.0/24', '2026-01-02T00:00:00.0000000+00:00');
                """);
        }

        await using var db = new Database(path);

        using var c = db.Open();
        var vnis = c.Query<(string Id, long Vni)>("SELECT id, vni FROM networks ORDER BY id").ToList();
        Assert.Equal([("a", 4096L), ("b", 4097L), ("c", 4098L)], vnis);
        Assert.Equal(4098L, c.ExecuteScalar<long>("SELECT value FROM counters WHERE name = 'vni'"));
    }

    [Fact]
    public void Open_OnDatabaseFromNewerKumod_IsRefusedWithAClearMessage()
    {
        var path = _dir.File("future.db");
        using (var future = OpenRaw(path))
            future.Execute($"CREATE TABLE something_new (id TEXT); PRAGMA user_version = {Migrations.Latest + 1};");

        var e = Assert.Throws<InvalidOperationException>(() => new Database(path));

        Assert.Equal($"database schema version {Migrations.Latest + 1} is newer than this kumod supports ({Migrations.Latest}); upgrade kumod", e.Message);
        using var c = OpenRaw(path);
        Assert.Equal(Migrations.Latest + 1, Migrations.CurrentVersion(c));
        Assert.Equal(0, c.ExecuteScalar<long>("SELECT count(*) FROM sqlite_master WHERE name = 'nodes'"));
    }

    [Fact]
    public void Open_WhenRefused_LeavesNoHandleOnTheFile()
    {
        if (!Directory.Exists("/proc/self/fd")) return; // Counting open files needs Linux's /proc.
        var path = _dir.File("future.db");
        using (var future = OpenRaw(path))
            future.Execute($"PRAGMA user_version = {Migrations.Latest + 1};");

        Assert.Throws<InvalidOperationException>(() => new Database(path));

        Assert.Empty(OpenHandles(path));
    }

    private static SqliteConnection OpenRaw(string path)
    {
        var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        c.Open();
        return c;
    }

    /// <summary>Every table and index definition, as SQLite stores it.</summary>
    private static List<string> Schema(string path)
    {
        using var c = OpenRaw(path);
        return c.Query<string>("SELECT type || ' ' || name || ': ' || sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name").ToList();
    }

    private static List<string> OpenHandles(string path) =>
        new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos()
            .Select(f => f.LinkTarget)
            .Where(t => t is not null && t.StartsWith(path, StringComparison.Ordinal))
            .Select(t => t!)
            .ToList();
}
