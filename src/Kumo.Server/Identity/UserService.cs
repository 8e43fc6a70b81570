using System.Collections.Concurrent;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Storage;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Identity;

/// <summary>A user vouched for by an external directory (LDAP).</summary>
public sealed record ExternalUser(string Name, bool IsAdmin);

/// <summary>Looks a user up in an external directory; null when the directory says no.</summary>
public delegate Task<ExternalUser?> ExternalAuthenticator(string username, string password, CancellationToken ct);

/// <summary>Users, their personal projects, shared projects and memberships, and login.</summary>
public sealed partial class UserService(
    Database db, TokenService tokens, LoginThrottle throttle, TimeProvider time, ILogger<UserService> logger,
    ExternalAuthenticator? external = null)
{
    public const int MinPasswordLength = 8;
    public const int MaxPasswordLength = 1024;

    /// <summary>A hash no password matches, verified for accounts that have none (see <see cref="LoginAsync"/>).</summary>
    private static readonly Lazy<string> UnmatchableHash = new(() => PasswordHasher.Hash(PasswordHasher.Generate()));

    private readonly ConcurrentDictionary<string, IReadOnlySet<string>> _membership = new();

    /// <summary>Bumped by every invalidation, so a read that started before a change never caches its answer.</summary>
    private long _generation;

    /// <summary>Drops cached memberships and token decisions (any identity change).</summary>
    public void Invalidate()
    {
        Interlocked.Increment(ref _generation);
        _membership.Clear();
        tokens.Invalidate();
    }

    public async Task<IReadOnlySet<string>> ProjectsOfAsync(string userId, CancellationToken ct)
    {
        if (_membership.TryGetValue(userId, out var cached)) return cached;
        var generation = Interlocked.Read(ref _generation);
        var set = (await db.ReadAsync(c => c.Query<string>("SELECT project FROM project_members WHERE user_id = @userId", new { userId }).ToList(), ct))
            .ToHashSet(StringComparer.Ordinal);
        _membership[userId] = set;
        // An invalidation that ran while we read may have cleared the cache before our store: take it back out.
        if (Interlocked.Read(ref _generation) != generation) _membership.TryRemove(userId, out _);
        return set;
    }

    /// <summary>
    /// On a database without users: creates 'admin' with a generated password, written once to
    /// <paramref name="credentialFile"/> (mode 0600) for `./kumo up` to show and use.
    /// </summary>
    public async Task BootstrapAsync(string credentialFile, CancellationToken ct)
    {
        var any = await db.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM users"), ct);
        if (any > 0) return;
        var password = PasswordHasher.Generate();
        await db.WriteAsync(ctx =>
        {
            var id = InsertUser(ctx, "admin", Roles.Admin, "local", PasswordHasher.Hash(password));
            ctx.Connection.Execute("INSERT OR IGNORE INTO project_members (project, user_id) VALUES ('default', @id)", new { id }, ctx.Transaction);
        }, ct);
        var tmp = credentialFile + ".tmp";
        await File.WriteAllTextAsync(tmp, $"admin\n{password}\n", ct);
        File.SetUnixFileMode(tmp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(tmp, credentialFile, overwrite: true);
        LogBootstrapped(credentialFile);
    }

    public async Task<LoginResponse> LoginAsync(LoginRequest? body, string source, CancellationToken ct)
    {
        var name = body?.Username ?? "";
        var password = body?.Password ?? "";
        if (Names.Validate(name, "username") is { } nameError) throw ProblemException.Validation("username", nameError);
        if (password.Length is 0 or > MaxPasswordLength) throw ProblemException.Validation("password", "password must not be empty");
        if (throttle.TryBegin(name, source, out var attempt) is { } wait)
            throw new ProblemException(429, ProblemTypes.TooManyAttempts, "Too many failed logins",
                $"too many failed logins for this account or address; try again in {Math.Ceiling(wait.TotalSeconds)} s");

        var user = await db.ReadAsync(c => c.QuerySingleOrDefault<UserRow>("SELECT * FROM users WHERE name = @name", new { name }), ct);
        var local = user is { Source: "local", PasswordHash: not null };
        // Accounts without a local password pay for one hash too, so the time to answer does not tell which exist.
        var ok = PasswordHasher.Verify(password, local ? user!.PasswordHash : UnmatchableHash.Value) && local;
        if (!ok && external is not null && (user is null || user.Source == "ldap"))
        {
            var found = await external(name, password, ct);
            if (found is not null)
            {
                user = await UpsertExternalAsync(found, ct);
                ok = true;
            }
        }
        if (!ok || user is null || user.Disabled != 0)
        {
            // One message for every case, so the answer does not tell which accounts exist. The attempt already
            // counts as a failure (TryBegin); only a success takes it back.
            throw new ProblemException(401, ProblemTypes.Unauthorized, "Login failed", "wrong username or password, or the account is disabled");
        }
        throttle.Succeeded(name, source, attempt);
        var (secret, row) = await db.WriteAsync(ctx => tokens.Issue(ctx, user.Id, TokenKinds.Session, "login", TokenService.SessionLifetime), ct);
        return new LoginResponse { Token = secret, ExpiresAt = Json.Time(row.ExpiresAt!), User = await ToApiAsync(user, ct) };
    }

    private async Task<UserRow> UpsertExternalAsync(ExternalUser found, CancellationToken ct)
    {
        await db.WriteAsync(ctx =>
        {
            var existing = ctx.Connection.QuerySingleOrDefault<UserRow>("SELECT * FROM users WHERE name = @Name", found, ctx.Transaction);
            var role = found.IsAdmin ? Roles.Admin : Roles.User;
            if (existing is null) InsertUser(ctx, found.Name, role, "ldap", null);
            else if (existing.Role != role) ctx.Connection.Execute("UPDATE users SET role = @role WHERE id = @Id", new { role, existing.Id }, ctx.Transaction);
            ctx.OnCommit(Invalidate);
        }, ct);
        return await db.ReadAsync(c => c.QuerySingle<UserRow>("SELECT * FROM users WHERE name = @Name", found), ct);
    }

    public async Task ChangePasswordAsync(Caller caller, PasswordChange? body, CancellationToken ct)
    {
        var user = await db.ReadAsync(c => c.QuerySingle<UserRow>("SELECT * FROM users WHERE id = @UserId", caller), ct);
        if (user.Source != "local")
            throw ProblemException.InvalidState("this account's password is managed by the directory (LDAP)");
        if (!PasswordHasher.Verify(body?.Current ?? "", user.PasswordHash))
            throw new ProblemException(403, ProblemTypes.Forbidden, "Wrong password", "the current password is not right");
        var error = CheckPassword(body?.New);
        if (error is not null) throw ProblemException.Validation("new", error);
        var hash = PasswordHasher.Hash(body!.New!);
        await db.WriteAsync(ctx =>
        {
            ctx.Connection.Execute("UPDATE users SET password_hash = @hash WHERE id = @UserId", new { hash, caller.UserId }, ctx.Transaction);
            // Other sessions end with the old password; API tokens stay (they are separate credentials).
            ctx.Connection.Execute("UPDATE tokens SET revoked = 1 WHERE user_id = @UserId AND kind = 'session'", caller, ctx.Transaction);
            ctx.OnCommit(Invalidate);
        }, ct);
    }

    public static string? CheckPassword(string? password) =>
        password is null || password.Length < MinPasswordLength ? $"passwords need at least {MinPasswordLength} characters"
        : password.Length > MaxPasswordLength ? $"passwords are at most {MaxPasswordLength} characters"
        : null;

    public async Task<UserCreated> CreateAsync(UsersPost? body, CancellationToken ct)
    {
        var name = body?.Name;
        if (Names.Validate(name, "user name") is { } nameError) throw ProblemException.Validation("name", nameError);
        var role = body?.Role ?? Roles.User;
        if (role is not (Roles.User or Roles.Admin)) throw ProblemException.Validation("role", $"role must be '{Roles.User}' or '{Roles.Admin}'");
        string? generated = null;
        var password = body?.Password;
        if (password is null) password = generated = PasswordHasher.Generate();
        else if (CheckPassword(password) is { } pwError) throw ProblemException.Validation("password", pwError);
        var hash = PasswordHasher.Hash(password);
        await db.WriteAsync(ctx =>
        {
            if (ctx.Connection.ExecuteScalar<long>("SELECT (SELECT count(*) FROM users WHERE name = @name) + (SELECT count(*) FROM projects WHERE name = @name)",
                new { name }, ctx.Transaction) > 0)
                throw ProblemException.Conflict($"a user or project named '{name}' already exists");
            InsertUser(ctx, name!, role, "local", hash);
        }, ct);
        return new UserCreated { User = await GetAsync(name!, ct), Password = generated };
    }

    /// <summary>Inserts a user and its personal project (same name), of which it is the only member.</summary>
    private string InsertUser(WriteContext ctx, string name, string role, string source, string? hash)
    {
        var id = Ulid.NewUlid().ToString().ToLowerInvariant();
        var now = Json.Now(time);
        ctx.Connection.Execute("INSERT INTO users (id, name, role, source, password_hash, created_at) VALUES (@id, @name, @role, @source, @hash, @now)",
            new { id, name, role, source, hash, now }, ctx.Transaction);
        ctx.Connection.Execute("INSERT INTO projects (name, personal_of, created_at) VALUES (@name, @id, @now)", new { name, id, now }, ctx.Transaction);
        ctx.Connection.Execute("INSERT INTO project_members (project, user_id) VALUES (@name, @id)", new { name, id }, ctx.Transaction);
        ctx.OnCommit(Invalidate);
        return id;
    }

    public async Task<List<User>> ListAsync(CancellationToken ct)
    {
        var users = await db.ReadAsync(c => c.Query<UserRow>("SELECT * FROM users ORDER BY name").ToList(), ct);
        var result = new List<User>(users.Count);
        foreach (var u in users) result.Add(await ToApiAsync(u, ct));
        return result;
    }

    public async Task<User> GetAsync(string name, CancellationToken ct)
    {
        var u = await db.ReadAsync(c => c.QuerySingleOrDefault<UserRow>("SELECT * FROM users WHERE name = @name", new { name }), ct)
            ?? throw ProblemException.NotFound("user", name);
        return await ToApiAsync(u, ct);
    }

    public async Task<User> SetDisabledAsync(string name, bool disabled, Caller caller, CancellationToken ct)
    {
        if (disabled && name == caller.UserName) throw ProblemException.InvalidState("you cannot disable your own account");
        var n = await db.WriteAsync(ctx =>
        {
            ctx.OnCommit(Invalidate);
            var changed = ctx.Connection.Execute("UPDATE users SET disabled = @d WHERE name = @name", new { d = disabled ? 1 : 0, name }, ctx.Transaction);
            // Disabling ends every session and API token for good: re-enabling the account must not revive a
            // token that leaked while it was disabled. The user logs in again and makes new API tokens.
            if (disabled)
                ctx.Connection.Execute("UPDATE tokens SET revoked = 1 WHERE revoked = 0 AND user_id = (SELECT id FROM users WHERE name = @name)", new { name }, ctx.Transaction);
            return changed;
        }, ct);
        if (n == 0) throw ProblemException.NotFound("user", name);
        return await GetAsync(name, ct);
    }

    /// <summary>
    /// Deletes a user. Their instances are either deleted (handed to <paramref name="deleteInstances"/>) or
    /// reassigned to another user's personal project (within that user's quota); the call refuses to orphan anything.
    /// </summary>
    public async Task DeleteAsync(string name, string? resources, string? reassignTo, Caller caller,
        Func<string, CancellationToken, Task> deleteInstances, QuotaService quotas, CancellationToken ct)
    {
        if (name == caller.UserName) throw ProblemException.InvalidState("you cannot delete your own account");
        var user = await db.ReadAsync(c => c.QuerySingleOrDefault<UserRow>("SELECT * FROM users WHERE name = @name", new { name }), ct)
            ?? throw ProblemException.NotFound("user", name);
        var (instanceCount, clusterCount) = await db.ReadAsync(c => (
            c.ExecuteScalar<long>("SELECT count(*) FROM instances WHERE owner_id = @Id", user),
            c.ExecuteScalar<long>("SELECT count(*) FROM clusters WHERE owner_id = @Id", user)), ct);
        var owned = instanceCount + clusterCount;
        if (owned > 0 && resources is not ("delete" or "reassign"))
            throw ProblemException.InvalidState($"user '{name}' owns {instanceCount} instance(s) and {clusterCount} cluster(s) or reservation(s); choose resources=delete or resources=reassign&to=USER");
        UserRow? target = null;
        if (owned > 0 && resources == "reassign")
        {
            target = await db.ReadAsync(c => c.QuerySingleOrDefault<UserRow>("SELECT * FROM users WHERE name = @reassignTo", new { reassignTo }), ct)
                ?? throw ProblemException.Validation("to", $"user '{reassignTo}' does not exist");
            if (target.Id == user.Id) throw ProblemException.Validation("to", "cannot reassign to the user being deleted");
        }
        if (owned > 0 && resources == "delete") await deleteInstances(user.Id, ct);
        await db.WriteAsync(ctx =>
        {
            var c = ctx.Connection;
            if (target is not null)
            {
                if (c.ExecuteScalar<long>("SELECT count(*) FROM instances a JOIN instances b ON a.name = b.name WHERE a.owner_id = @from AND a.project = @fromProject AND b.project = @toProject",
                    new { from = user.Id, fromProject = user.Name, toProject = target.Name }, ctx.Transaction) > 0)
                    throw ProblemException.Conflict($"'{target.Name}' already has instances with the same names; rename or delete them first");
                var move = new { to = target.Id, from = user.Id, fromProject = user.Name, toProject = target.Name };
                // Clusters (and reservations) go with their members, and the networks they made with them.
                if (c.ExecuteScalar<long>("SELECT count(*) FROM clusters a JOIN clusters b ON a.name = b.name WHERE a.owner_id = @from AND a.project = @fromProject AND b.project = @toProject",
                    move, ctx.Transaction) > 0)
                    throw ProblemException.Conflict($"'{target.Name}' already has clusters or reservations with the same names; delete them first");
                if (c.ExecuteScalar<long>(
                    """
                    SELECT count(*) FROM networks a JOIN networks b ON a.name = b.name
                    WHERE a.project = @fromProject AND b.project = @toProject
                      AND a.name IN (SELECT private_network FROM clusters WHERE owner_id = @from AND project = @fromProject
                                     UNION SELECT external_network FROM clusters WHERE owner_id = @from AND project = @fromProject AND owns_external = 1)
                    """, move, ctx.Transaction) > 0)
                    throw ProblemException.Conflict($"'{target.Name}' already has networks named like the moving clusters' networks; delete them first");
                c.Execute(
                    """
                    UPDATE networks SET project = @toProject
                    WHERE project = @fromProject
                      AND name IN (SELECT private_network FROM clusters WHERE owner_id = @from AND project = @fromProject
                                   UNION SELECT external_network FROM clusters WHERE owner_id = @from AND project = @fromProject AND owns_external = 1)
                    """, move, ctx.Transaction);
                c.Execute("UPDATE clusters SET owner_id = @to, project = CASE WHEN project = @fromProject THEN @toProject ELSE project END WHERE owner_id = @from",
                    move, ctx.Transaction);
                c.Execute("UPDATE instances SET owner_id = @to, project = CASE WHEN project = @fromProject THEN @toProject ELSE project END, version = version + 1 WHERE owner_id = @from",
                    move, ctx.Transaction);
                quotas.EnsureWithin(ctx, target.Id, target.Name, target.Role == Roles.Admin);
            }
            if (c.ExecuteScalar<long>("SELECT count(*) FROM instances WHERE owner_id = @Id", user, ctx.Transaction)
                + c.ExecuteScalar<long>("SELECT count(*) FROM clusters WHERE owner_id = @Id", user, ctx.Transaction) > 0)
                throw ProblemException.InvalidState($"user '{name}' still owns instances or clusters (a delete is still running); try again when they are gone");
            // The personal project goes only when nothing is left in it (never orphan a network, volume or cluster).
            c.Execute(
                """
                DELETE FROM projects WHERE personal_of = @Id
                  AND NOT EXISTS (SELECT 1 FROM instances WHERE project = projects.name)
                  AND NOT EXISTS (SELECT 1 FROM networks WHERE project = projects.name)
                  AND NOT EXISTS (SELECT 1 FROM volumes WHERE project = projects.name)
                  AND NOT EXISTS (SELECT 1 FROM clusters WHERE project = projects.name)
                """, user, ctx.Transaction);
            c.Execute("DELETE FROM users WHERE id = @Id", user, ctx.Transaction);
            ctx.OnCommit(Invalidate);
        }, ct);
    }

    internal async Task<User> ToApiAsync(UserRow u, CancellationToken ct) => new()
    {
        Id = u.Id,
        Name = u.Name,
        Role = u.Role,
        Source = u.Source,
        Disabled = u.Disabled != 0,
        Projects = (await ProjectsOfAsync(u.Id, ct)).Order(StringComparer.Ordinal).ToList(),
        CreatedAt = Json.Time(u.CreatedAt),
    };

    internal Task<User> ToApiAsync(Caller caller, CancellationToken ct) => GetAsync(caller.UserName!, ct);

    [LoggerMessage(LogLevel.Warning, "created the initial admin account 'admin'; its password is in {File} (readable by root only)")]
    private partial void LogBootstrapped(string file);
}
