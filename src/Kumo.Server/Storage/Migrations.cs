using Microsoft.Data.Sqlite;

namespace Kumo.Server.Storage;

/// <summary>
/// Forward-only schema migrations, applied in order inside one transaction each. The index in the list is the
/// schema version stored in PRAGMA user_version; never edit a shipped migration, append a new one.
/// </summary>
internal static class Migrations
{
    public static readonly IReadOnlyList<string> All =
    [
        // 1: the foundation schema.
        """
        CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            health TEXT NOT NULL,
            draining INTEGER NOT NULL DEFAULT 0,
            accelerator TEXT NOT NULL,
            cpus INTEGER NOT NULL,
            memory_bytes INTEGER NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            last_heartbeat TEXT,
            agent_version TEXT,
            version INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE images (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            project TEXT NOT NULL,
            type TEXT NOT NULL,
            readiness TEXT NOT NULL,
            description TEXT,
            built_in INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (project, type, name)
        );
        CREATE TABLE instances (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            project TEXT NOT NULL,
            type TEXT NOT NULL,
            image TEXT NOT NULL,
            cpus INTEGER NOT NULL,
            memory_bytes INTEGER NOT NULL,
            disk_bytes INTEGER NOT NULL,
            node_id TEXT REFERENCES nodes(id),
            state TEXT NOT NULL,
            desired_power TEXT NOT NULL,
            stop_mode TEXT NOT NULL,
            boot_generation INTEGER NOT NULL DEFAULT 0,
            status_message TEXT,
            labels TEXT NOT NULL DEFAULT '{}',
            description TEXT,
            version INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (project, name)
        );
        CREATE INDEX instances_node ON instances (node_id);
        CREATE TABLE operations (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            instance_id TEXT,
            expect TEXT,
            min_generation INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            message TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
        // 2: lookups of pending operations per instance happen on every status report.
        """
        CREATE INDEX operations_pending ON operations (instance_id) WHERE status IN ('pending', 'running');
        """,
        // 3: the audit log, hash-chained (Audit/AuditChain.cs). Append-only: the triggers refuse changes and deletes.
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            seq INTEGER NOT NULL UNIQUE,
            time TEXT NOT NULL,
            user_id TEXT,
            user_name TEXT,
            source TEXT NOT NULL,
            method TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            outcome TEXT NOT NULL,
            status INTEGER NOT NULL,
            request_id TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_user ON audit (user_name, seq);
        CREATE INDEX audit_time ON audit (time);
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
    ];

    public static int Latest => All.Count;

    public static int Apply(SqliteConnection connection)
    {
        var current = CurrentVersion(connection);
        if (current > Latest)
            throw new InvalidOperationException(
                $"database schema version {current} is newer than this kumod supports ({Latest}); upgrade kumod");
        for (var v = current; v < Latest; v++)
        {
            using var tx = connection.BeginTransaction();
            using (var cmd = connection.CreateCommand())
            {
                cmd.Transaction = tx;
                cmd.CommandText = All[v] + $"\nPRAGMA user_version = {v + 1};";
                cmd.ExecuteNonQuery();
            }
            tx.Commit();
        }
        return Latest;
    }

    public static int CurrentVersion(SqliteConnection connection)
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "PRAGMA user_version";
        return Convert.ToInt32(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
