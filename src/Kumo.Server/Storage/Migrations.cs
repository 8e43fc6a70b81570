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
        // 3: identity: users, tokens, projects, memberships, quotas; owners of instances and operations.
        """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            source TEXT NOT NULL,
            password_hash TEXT,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            hash TEXT NOT NULL UNIQUE,
            name TEXT,
            kind TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            last_used_at TEXT,
            revoked INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX tokens_user ON tokens (user_id);
        CREATE TABLE projects (
            name TEXT PRIMARY KEY,
            personal_of TEXT REFERENCES users(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE project_members (
            project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            PRIMARY KEY (project, user_id)
        );
        CREATE TABLE quotas (
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            vms INTEGER, containers INTEGER, vcpus INTEGER, memory_bytes INTEGER, disk_bytes INTEGER,
            PRIMARY KEY (scope, subject)
        );
        ALTER TABLE instances ADD COLUMN owner_id TEXT;
        CREATE INDEX instances_owner ON instances (owner_id);
        CREATE INDEX instances_project ON instances (project);
        ALTER TABLE operations ADD COLUMN project TEXT;
        ALTER TABLE operations ADD COLUMN user_id TEXT;
        INSERT INTO projects (name, personal_of, created_at) VALUES ('default', NULL, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
        """,
        // 4: TLS for agents: one-time join tokens (hashed) and the client certificates issued to nodes.
        """
        CREATE TABLE join_tokens (
            hash TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT,
            used_by TEXT
        );
        CREATE TABLE node_certificates (
            serial TEXT PRIMARY KEY,
            node_name TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            issued_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE INDEX node_certificates_node ON node_certificates (node_name) WHERE revoked_at IS NULL;
        """,
        // 5: the audit log, hash-chained (Audit/AuditChain.cs). Append-only: the triggers refuse changes and deletes.
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
        // 6: allocated usage: one interval per stretch an instance was shown running (Instances/InstanceService.ApplyStatus).
        """
        CREATE TABLE usage_intervals (
            id INTEGER PRIMARY KEY,
            instance_id TEXT NOT NULL,
            instance_name TEXT NOT NULL,
            owner_id TEXT,
            project TEXT NOT NULL,
            cpus INTEGER NOT NULL,
            memory_bytes INTEGER NOT NULL,
            disk_bytes INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT NULL
        );
        CREATE INDEX usage_intervals_owner ON usage_intervals (owner_id);
        CREATE INDEX usage_intervals_project ON usage_intervals (project);
        CREATE INDEX usage_intervals_open ON usage_intervals (instance_id) WHERE ended_at IS NULL;
        """,
        // 7: images stored by kumod (imported or built): the qcow2's checksum and sizes; instances remember the image's id
        // (names can be reused after a delete) and carry a cloud-init seed (SSH keys, a password hash).
        """
        ALTER TABLE images ADD COLUMN owner_id TEXT;
        ALTER TABLE images ADD COLUMN sha256 TEXT;
        ALTER TABLE images ADD COLUMN size_bytes INTEGER;
        ALTER TABLE images ADD COLUMN virtual_size_bytes INTEGER;
        ALTER TABLE images ADD COLUMN source_format TEXT;
        ALTER TABLE instances ADD COLUMN image_id TEXT;
        ALTER TABLE instances ADD COLUMN ssh_keys TEXT;
        ALTER TABLE instances ADD COLUMN password_hash TEXT;
        CREATE INDEX instances_image ON instances (image_id);
        """,
        // 8: snapshots of an instance's root disk (issue 6 part 3) and volumes, qcow2 disks of their own (part 8). A restore
        // is asked for by bumping restore_generation. A volume gets a node on its first attach and keeps it.
        """
        CREATE TABLE snapshots (
            instance_id TEXT NOT NULL,
            name TEXT NOT NULL,
            memory INTEGER NOT NULL,
            state TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (instance_id, name)
        );
        ALTER TABLE instances ADD COLUMN restore_generation INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE instances ADD COLUMN restore_snapshot TEXT;
        CREATE TABLE volumes (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            project TEXT NOT NULL,
            owner_id TEXT,
            size_bytes INTEGER NOT NULL,
            node_id TEXT,
            instance_id TEXT,
            state TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (project, name)
        );
        CREATE INDEX volumes_node ON volumes (node_id);
        CREATE INDEX volumes_instance ON volumes (instance_id);
        """,
        // 9: measured usage: CPU-seconds the agents measured, per instance and UTC hour; and per instance the last counter
        // value counted (with the process it belongs to), so a report seen twice or after a restart is not counted again.
        """
        CREATE TABLE measured_usage (
            instance_id TEXT NOT NULL,
            hour TEXT NOT NULL,
            instance_name TEXT NOT NULL,
            owner_id TEXT,
            project TEXT NOT NULL,
            cpu_seconds REAL NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            PRIMARY KEY (instance_id, hour)
        );
        CREATE INDEX measured_usage_hour ON measured_usage (hour);
        CREATE TABLE measured_cursors (
            instance_id TEXT PRIMARY KEY,
            process_key TEXT NOT NULL,
            cpu_seconds REAL NOT NULL
        );
        """,
        // 10: gdb stub ports, one per VM at most, from the admin's pool. A row lives only while its VM is meant to
        // run: stop, destroy, delete and a guest's own power-off remove it in the same write.
        """
        CREATE TABLE debug_ports (
            instance_id TEXT PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
            port INTEGER NOT NULL UNIQUE,
            node_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0,
            error TEXT
        );
        """,
        // 11: containers: command, environment, published ports (host ports from kumod's pool) and volumes, as JSON.
        """
        ALTER TABLE instances ADD COLUMN container TEXT;
        """,
        // 12: tenant networks (one subnet each, unique per project, not overlapping within it) and IPAM: one row per
        // instance NIC, so no two NICs share an address or a MAC; rows go with their instance.
        """
        CREATE TABLE networks (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            project TEXT NOT NULL,
            subnet TEXT NOT NULL,
            nat INTEGER NOT NULL DEFAULT 0,
            dns_domain TEXT,
            owner_id TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (project, name)
        );
        CREATE TABLE network_addresses (
            network_id TEXT NOT NULL REFERENCES networks(id),
            address TEXT NOT NULL,
            mac TEXT NOT NULL UNIQUE,
            instance_id TEXT NOT NULL,
            PRIMARY KEY (network_id, address),
            UNIQUE (instance_id, network_id)
        );
        CREATE INDEX network_addresses_instance ON network_addresses (instance_id);
        """,
        // 13: live migrations in flight, at most one per instance. The target's capacity is reserved while the row
        // lives; the write that moves the instance (or calls the migration off) deletes it. Ports come from kumod's
        // pool and are unique among migrations in flight.
        """
        CREATE TABLE migrations (
            instance_id TEXT PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
            id TEXT NOT NULL UNIQUE,
            source_node_id TEXT NOT NULL,
            target_node_id TEXT NOT NULL,
            port INTEGER NOT NULL UNIQUE,
            operation_id TEXT NOT NULL,
            listening INTEGER NOT NULL DEFAULT 0,
            received INTEGER NOT NULL DEFAULT 0,
            source_lost INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        """,
        // 14: port forwards: a node port (unique per protocol) DNATed to an instance's address on its tenant network.
        """
        CREATE TABLE port_forwards (
            protocol TEXT NOT NULL,
            public_port INTEGER NOT NULL,
            instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
            network_id TEXT NOT NULL,
            address TEXT NOT NULL,
            port INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (protocol, public_port)
        );
        CREATE INDEX port_forwards_instance ON port_forwards (instance_id);
        """,
        // 15: container images built with kumo ct build live in one node's engine: the node they were built on (null for
        // the catalogue's other images). Instances of such an image are placed on that node.
        """
        ALTER TABLE images ADD COLUMN node_id TEXT;
        """,
        // 16: VXLAN between agents: a node's underlay address (NULL: VXLAN disabled there) and one VNI per network,
        // unique; existing networks get VNIs above 4095 in creation order. The counter remembers the last VNI handed
        // out, so a deleted network's VNI is not given to the next one.
        """
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        ALTER TABLE nodes ADD COLUMN vxlan_address TEXT;
        ALTER TABLE networks ADD COLUMN vni INTEGER;
        UPDATE networks SET vni = 4095 + (SELECT count(*) FROM networks o WHERE o.created_at < networks.created_at
            OR (o.created_at = networks.created_at AND o.id <= networks.id));
        CREATE UNIQUE INDEX networks_vni ON networks (vni);
        INSERT INTO counters (name, value) VALUES ('vni', (SELECT COALESCE(max(vni), 4095) FROM networks));
        """,
        // 17: virtual clusters (a frontend plus compute nodes on a private network, created and removed as one) and
        // their reservation windows. Members point at their cluster; the networks a cluster made are removed with it.
        """
        CREATE TABLE clusters (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            project TEXT NOT NULL,
            owner_id TEXT,
            state TEXT NOT NULL,
            message TEXT,
            nodes INTEGER NOT NULL,
            frontend_image TEXT NOT NULL,
            frontend_cpus INTEGER NOT NULL,
            frontend_memory_bytes INTEGER NOT NULL,
            node_image TEXT NOT NULL,
            node_cpus INTEGER NOT NULL,
            node_memory_bytes INTEGER NOT NULL,
            private_network TEXT NOT NULL,
            private_subnet TEXT NOT NULL,
            external_network TEXT NOT NULL,
            external_subnet TEXT,
            owns_external INTEGER NOT NULL,
            expose_port INTEGER,
            public_port INTEGER,
            node_id TEXT,
            start_at TEXT,
            end_at TEXT,
            warned INTEGER NOT NULL DEFAULT 0,
            operation_id TEXT,
            events TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (project, name)
        );
        ALTER TABLE instances ADD COLUMN cluster_id TEXT;
        CREATE INDEX instances_cluster ON instances (cluster_id) WHERE cluster_id IS NOT NULL;
        """,
        // 18: reservations of single VMs share the clusters table (same calendar, reconciler and history): kind 'vm',
        // with the VM's validated create request (never a password, only its hash) kept until the window opens.
        """
        ALTER TABLE clusters ADD COLUMN kind TEXT NOT NULL DEFAULT 'cluster';
        ALTER TABLE clusters ADD COLUMN vm_spec TEXT;
        ALTER TABLE clusters ADD COLUMN vm_password_hash TEXT;
        """,
        // 19: admin-owned libvirt domain templates. An instance made from one keeps the template's XML as it was at
        // create time, so changing or removing the template never changes a defined VM.
        """
        CREATE TABLE domain_templates (
            name TEXT PRIMARY KEY,
            description TEXT,
            xml TEXT NOT NULL,
            created_by TEXT,
            created_at TEXT NOT NULL
        );
        ALTER TABLE instances ADD COLUMN template TEXT;
        ALTER TABLE instances ADD COLUMN template_xml TEXT;
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
