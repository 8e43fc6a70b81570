using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Storage;

namespace Kumo.Server.Identity;

/// <summary>Projects group resources; every user has a personal one, admins create shared ones and add members.</summary>
public sealed class ProjectService(Database db, UserService users, TimeProvider time)
{
    /// <summary>
    /// The project a request acts in: the one asked for, or the caller's personal project. A project the caller
    /// may not see is reported as not found, so its existence does not leak.
    /// </summary>
    public async Task<string> ResolveAsync(Caller caller, string? requested, CancellationToken ct)
    {
        var project = requested ?? caller.UserName ?? throw new ProblemException(401, ProblemTypes.Unauthorized, "Login required", "log in first");
        if (Names.Validate(project, "project") is { } error) throw ProblemException.Validation("project", error);
        if (caller.IsAdmin)
        {
            var exists = await db.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM projects WHERE name = @project", new { project }), ct);
            return exists > 0 ? project : throw ProblemException.NotFound("project", project);
        }
        return (await users.ProjectsOfAsync(caller.UserId!, ct)).Contains(project) ? project : throw ProblemException.NotFound("project", project);
    }

    public async Task<List<Project>> ListAsync(Caller caller, CancellationToken ct)
    {
        var rows = await db.ReadAsync(c => c.Query<(string Name, string? PersonalOf, string CreatedAt)>(
            "SELECT p.name, u.name, p.created_at FROM projects p LEFT JOIN users u ON u.id = p.personal_of ORDER BY p.name").ToList(), ct);
        var members = await db.ReadAsync(c => c.Query<(string Project, string User)>(
            "SELECT m.project, u.name FROM project_members m JOIN users u ON u.id = m.user_id ORDER BY u.name").ToList(), ct);
        var mine = caller.IsAdmin ? null : await users.ProjectsOfAsync(caller.UserId!, ct);
        return rows.Where(r => mine is null || mine.Contains(r.Name)).Select(r => new Project
        {
            Name = r.Name,
            PersonalOf = r.PersonalOf,
            Members = members.Where(m => m.Project == r.Name).Select(m => m.User).ToList(),
            CreatedAt = Json.Time(r.CreatedAt),
        }).ToList();
    }

    public async Task<Project> CreateAsync(ProjectsPost? body, Caller caller, CancellationToken ct)
    {
        var name = body?.Name;
        if (Names.Validate(name, "project name") is { } error) throw ProblemException.Validation("name", error);
        await db.WriteAsync(ctx =>
        {
            if (ctx.Connection.ExecuteScalar<long>("SELECT (SELECT count(*) FROM users WHERE name = @name) + (SELECT count(*) FROM projects WHERE name = @name)",
                new { name }, ctx.Transaction) > 0)
                throw ProblemException.Conflict($"a user or project named '{name}' already exists");
            ctx.Connection.Execute("INSERT INTO projects (name, personal_of, created_at) VALUES (@name, NULL, @now)", new { name, now = Json.Now(time) }, ctx.Transaction);
            ctx.Connection.Execute("INSERT INTO project_members (project, user_id) VALUES (@name, @UserId)", new { name, caller.UserId }, ctx.Transaction);
            ctx.OnCommit(users.Invalidate);
        }, ct);
        return (await ListAsync(caller, ct)).Single(p => p.Name == name);
    }

    public async Task<Project> SetMemberAsync(string project, string? userName, bool add, Caller caller, CancellationToken ct)
    {
        if (Names.Validate(userName, "user") is { } error) throw ProblemException.Validation("user", error);
        await db.WriteAsync(ctx =>
        {
            var c = ctx.Connection;
            var p = c.QuerySingleOrDefault<(string Name, string? PersonalOf)>("SELECT name, personal_of FROM projects WHERE name = @project", new { project }, ctx.Transaction);
            if (p.Name is null) throw ProblemException.NotFound("project", project);
            if (p.PersonalOf is not null) throw ProblemException.InvalidState($"'{project}' is a personal project; members are added to shared projects");
            var userId = c.ExecuteScalar<string?>("SELECT id FROM users WHERE name = @userName", new { userName }, ctx.Transaction)
                ?? throw ProblemException.Validation("user", $"user '{userName}' does not exist");
            c.Execute(add ? "INSERT OR IGNORE INTO project_members (project, user_id) VALUES (@project, @userId)"
                          : "DELETE FROM project_members WHERE project = @project AND user_id = @userId", new { project, userId }, ctx.Transaction);
            ctx.OnCommit(users.Invalidate);
        }, ct);
        return (await ListAsync(caller, ct)).Single(x => x.Name == project);
    }
}
