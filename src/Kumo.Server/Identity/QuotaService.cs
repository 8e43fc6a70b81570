using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Storage;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Identity;

/// <summary>Per-user defaults, from the educational deployment Kumo mirrors: 4 VMs and 8 containers per user.</summary>
public sealed record QuotaDefaults
{
    public int Vms { get; init; } = 4;
    public int Containers { get; init; } = 8;
    public int Vcpus { get; init; } = 8;
    public long MemoryBytes { get; init; } = 8 * ByteSize.GiB;
    public long DiskBytes { get; init; } = 100 * ByteSize.GiB;
}

/// <summary>
/// Quotas are checked inside the write that places an instance (the single writer), so concurrent creates can
/// never overshoot. Users have defaults; projects are unlimited unless an admin sets limits.
/// </summary>
public sealed class QuotaService(Database db, IOptions<QuotaDefaults> defaults)
{
    public sealed record Request(string Type, int Cpus, long MemoryBytes, long DiskBytes);

    /// <summary>Throws a quota-exceeded problem naming the quota and its usage if the request does not fit.</summary>
    internal void Check(WriteContext ctx, Caller owner, string project, Request r)
    {
        // Admins run the cloud: no default limits for them, only ones set explicitly.
        if ((Limits(ctx, "user", owner.UserId!) ?? (owner.IsAdmin ? null : Defaults())) is { } userLimits)
            CheckOne(ctx, "user", owner.UserName!, userLimits, "owner_id = @subject", owner.UserId!, r);
        if (Limits(ctx, "project", project) is { } projectLimits)
            CheckOne(ctx, "project", project, projectLimits, "project = @subject", project, r);
    }

    /// <summary>
    /// Throws a quota-exceeded problem if what a user owns now (inside <paramref name="ctx"/>, e.g. after resources
    /// were reassigned to them) is over their limits. Unlike <see cref="Check"/> nothing new is asked for.
    /// </summary>
    internal void EnsureWithin(WriteContext ctx, string userId, string userName, bool isAdmin)
    {
        if ((Limits(ctx, "user", userId) ?? (isAdmin ? null : Defaults())) is not { } limits) return;
        var used = ctx.QueryRow(UsageSql("owner_id = @subject"), ReadUsage, ("$subject", userId))!;
        string? over =
            used.Vms > limits.Vms ? $"vms: {used.Vms} VMs of {limits.Vms}"
            : used.Containers > limits.Containers ? $"containers: {used.Containers} containers of {limits.Containers}"
            : used.Vcpus > limits.Vcpus ? $"vcpus: {used.Vcpus} vCPUs of {limits.Vcpus}"
            : used.MemoryBytes > limits.MemoryBytes ? $"memory: {ByteSize.Human(used.MemoryBytes ?? 0)} of {ByteSize.Human(limits.MemoryBytes!.Value)}"
            : used.DiskBytes > limits.DiskBytes ? $"disk: {ByteSize.Human(used.DiskBytes ?? 0)} of {ByteSize.Human(limits.DiskBytes!.Value)}"
            : null;
        if (over is not null)
            throw new ProblemException(403, ProblemTypes.QuotaExceeded, "Quota exceeded",
                $"user '{userName}' would be over quota for {over}; raise their quota (kumo quota set {userName} ...) or reassign to someone else");
    }

    private static void CheckOne(WriteContext ctx, string scope, string name, QuotaLimits limits, string where, string subject, Request r)
    {
        var used = ctx.QueryRow(UsageSql(where), ReadUsage, ("$subject", subject))!;
        void Over(string what, string have, string limit) => throw new ProblemException(403, ProblemTypes.QuotaExceeded, "Quota exceeded",
            $"{scope} '{name}' quota for {what} exceeded: {have} in use of {limit}")
        {
            Errors = new Dictionary<string, string[]> { [what] = [$"{have} in use of {limit} ({scope} {name})"] },
        };
        if (r.Type == "vm" && used.Vms + 1 > limits.Vms) Over("vms", $"{used.Vms} VMs", $"{limits.Vms}");
        if (r.Type == "container" && used.Containers + 1 > limits.Containers) Over("containers", $"{used.Containers} containers", $"{limits.Containers}");
        if (used.Vcpus + r.Cpus > limits.Vcpus) Over("vcpus", $"{used.Vcpus} vCPUs (+{r.Cpus} asked)", $"{limits.Vcpus}");
        if (used.MemoryBytes + r.MemoryBytes > limits.MemoryBytes)
            Over("memory", $"{ByteSize.Human(used.MemoryBytes ?? 0)} (+{ByteSize.Human(r.MemoryBytes)} asked)", ByteSize.Human(limits.MemoryBytes!.Value));
        if (used.DiskBytes + r.DiskBytes > limits.DiskBytes)
            Over("disk", $"{ByteSize.Human(used.DiskBytes ?? 0)} (+{ByteSize.Human(r.DiskBytes)} asked)", ByteSize.Human(limits.DiskBytes!.Value));
    }

    private static string UsageSql(string where) =>
        "SELECT count(*) FILTER (WHERE type = 'vm'), count(*) FILTER (WHERE type = 'container'), coalesce(sum(cpus), 0), "
        + $"coalesce(sum(memory_bytes), 0), coalesce(sum(disk_bytes), 0) + {VolumeBytes(where)} FROM instances WHERE {where.Replace("@subject", "$subject", StringComparison.Ordinal)}";

    /// <summary>Volumes count in the disk quota next to instance disks (same owner_id/project columns).</summary>
    private static string VolumeBytes(string where) =>
        $"(SELECT coalesce(sum(size_bytes), 0) FROM volumes WHERE {where.Replace("@subject", "$subject", StringComparison.Ordinal)})";

    private static QuotaLimits ReadUsage(Microsoft.Data.Sqlite.SqliteDataReader r) =>
        new() { Vms = r.GetInt32(0), Containers = r.GetInt32(1), Vcpus = r.GetInt32(2), MemoryBytes = r.GetInt64(3), DiskBytes = r.GetInt64(4) };

    private static QuotaLimits Usage(Microsoft.Data.Sqlite.SqliteConnection c, Microsoft.Data.Sqlite.SqliteTransaction? tx, string where, string subject)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = UsageSql(where);
        cmd.Parameters.AddWithValue("$subject", subject);
        using var reader = cmd.ExecuteReader();
        reader.Read();
        return ReadUsage(reader);
    }

    /// <summary>Limits as stored; null when none are set for the subject. Runs on every create: prepared once.</summary>
    private static QuotaLimits? Limits(WriteContext ctx, string scope, string subject) =>
        ctx.QueryRow(LimitsSql, ReadLimits, ("$scope", scope), ("$subject", subject));

    private const string LimitsSql = "SELECT vms, containers, vcpus, memory_bytes, disk_bytes FROM quotas WHERE scope = $scope AND subject = $subject";

    private static QuotaLimits ReadLimits(Microsoft.Data.Sqlite.SqliteDataReader r) => new()
    {
        Vms = r.IsDBNull(0) ? null : r.GetInt32(0),
        Containers = r.IsDBNull(1) ? null : r.GetInt32(1),
        Vcpus = r.IsDBNull(2) ? null : r.GetInt32(2),
        MemoryBytes = r.IsDBNull(3) ? null : r.GetInt64(3),
        DiskBytes = r.IsDBNull(4) ? null : r.GetInt64(4),
    };

    private static QuotaLimits? Limits(Microsoft.Data.Sqlite.SqliteConnection c, Microsoft.Data.Sqlite.SqliteTransaction? tx, string scope, string subject)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = LimitsSql;
        cmd.Parameters.AddWithValue("$scope", scope);
        cmd.Parameters.AddWithValue("$subject", subject);
        using var reader = cmd.ExecuteReader();
        return reader.Read() ? ReadLimits(reader) : null;
    }

    private QuotaLimits Defaults() => new()
    {
        Vms = defaults.Value.Vms,
        Containers = defaults.Value.Containers,
        Vcpus = defaults.Value.Vcpus,
        MemoryBytes = defaults.Value.MemoryBytes,
        DiskBytes = defaults.Value.DiskBytes,
    };

    public async Task<Quota> ShowAsync(string scope, string name, CancellationToken ct)
    {
        if (scope is not ("user" or "project")) throw ProblemException.Validation("scope", "scope is user or project");
        return await db.ReadAsync(c =>
        {
            string subject = name;
            if (scope == "user")
                subject = c.ExecuteScalar<string?>("SELECT id FROM users WHERE name = @name", new { name }) ?? throw ProblemException.NotFound("user", name);
            else if (c.ExecuteScalar<long>("SELECT count(*) FROM projects WHERE name = @name", new { name }) == 0)
                throw ProblemException.NotFound("project", name);
            var isAdmin = scope == "user" && c.ExecuteScalar<string?>("SELECT role FROM users WHERE id = @subject", new { subject }) == Roles.Admin;
            var limits = Limits(c, null, scope, subject) ?? (scope == "user" && !isAdmin ? Defaults() : new QuotaLimits());
            var used = Usage(c, null, scope == "user" ? "owner_id = @subject" : "project = @subject", subject);
            return new Quota { Scope = scope, Name = name, Limits = limits, Used = used };
        }, ct);
    }

    public async Task<Quota> SetAsync(string scope, string name, QuotaPut? put, CancellationToken ct)
    {
        var current = (await ShowAsync(scope, name, ct)).Limits;
        var errors = new Dictionary<string, string[]>();
        long? Size(string? text, long? keep, string field)
        {
            if (text is null) return keep;
            if (ByteSize.TryParse(text, out var b, out var e)) return b;
            errors[field] = [e!];
            return keep;
        }
        int? Count(int? v, int? keep, string field)
        {
            if (v is null) return keep;
            if (v is < 0 or > 100_000) errors[field] = [$"{field} must be between 0 and 100000"];
            return v;
        }
        var limits = new QuotaLimits
        {
            Vms = Count(put?.Vms, current.Vms, "vms"),
            Containers = Count(put?.Containers, current.Containers, "containers"),
            Vcpus = Count(put?.Vcpus, current.Vcpus, "vcpus"),
            MemoryBytes = Size(put?.Memory, current.MemoryBytes, "memory"),
            DiskBytes = Size(put?.Disk, current.DiskBytes, "disk"),
        };
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        await db.WriteAsync(ctx =>
        {
            var subject = scope == "user" ? ctx.Connection.ExecuteScalar<string>("SELECT id FROM users WHERE name = @name", new { name }, ctx.Transaction) : name;
            ctx.Connection.Execute(
                """
                INSERT INTO quotas (scope, subject, vms, containers, vcpus, memory_bytes, disk_bytes) VALUES (@scope, @subject, @Vms, @Containers, @Vcpus, @MemoryBytes, @DiskBytes)
                ON CONFLICT (scope, subject) DO UPDATE SET vms = excluded.vms, containers = excluded.containers, vcpus = excluded.vcpus,
                    memory_bytes = excluded.memory_bytes, disk_bytes = excluded.disk_bytes
                """,
                new { scope, subject, limits.Vms, limits.Containers, limits.Vcpus, limits.MemoryBytes, limits.DiskBytes }, ctx.Transaction);
        }, ct);
        return await ShowAsync(scope, name, ct);
    }
}
