using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.Instances;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

internal static class IdentityEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var auth = api.MapGroup("/auth").WithTags("auth");
        auth.MapPost("/login", async (UserService users, HttpContext http, CancellationToken ct) =>
            await users.LoginAsync(await Problems.ReadJsonAsync<LoginRequest>(http.Request), Caller.Of(http).SourceAddress, ct))
            .Accepts<LoginRequest>("application/json").Requires("auth", "login");
        auth.MapPost("/logout", async (TokenService tokens, HttpContext http, CancellationToken ct) =>
        {
            await tokens.RevokeSecretAsync(Authorization.BearerToken(http)!, ct);
            return TypedResults.NoContent();
        }).Requires("auth", "logout");
        auth.MapGet("/whoami", (UserService users, HttpContext http, CancellationToken ct) => users.ToApiAsync(Caller.Of(http), ct))
            .Requires("auth", "whoami");
        auth.MapPost("/password", async (UserService users, HttpContext http, CancellationToken ct) =>
        {
            await users.ChangePasswordAsync(Caller.Of(http), await Problems.ReadJsonAsync<PasswordChange>(http.Request), ct);
            return TypedResults.NoContent();
        }).Accepts<PasswordChange>("application/json").Requires("auth", "password");

        var tokens = api.MapGroup("/tokens").WithTags("tokens");
        tokens.MapGet("/", (TokenService s, HttpContext http, CancellationToken ct) => s.ListAsync(Caller.Of(http), ct)).Requires("token", "list");
        tokens.MapPost("/", async (TokenService s, HttpContext http, CancellationToken ct) =>
            TypedResults.Created((string?)null, await s.CreateAsync(Caller.Of(http), await Problems.ReadJsonAsync<TokensPost>(http.Request), ct)))
            .Accepts<TokensPost>("application/json").Requires("token", "create");
        tokens.MapDelete("/{id}", async (TokenService s, HttpContext http, string id, CancellationToken ct) =>
        {
            await s.RevokeAsync(Caller.Of(http), id, ct);
            return TypedResults.NoContent();
        }).Requires("token", "revoke");

        var users = api.MapGroup("/users").WithTags("users");
        users.MapGet("/", (UserService s, CancellationToken ct) => s.ListAsync(ct)).Requires("user", "list");
        users.MapGet("/{name}", (UserService s, string name, CancellationToken ct) => s.GetAsync(name, ct)).Requires("user", "get");
        users.MapPost("/", async (UserService s, HttpContext http, CancellationToken ct) =>
        {
            var created = await s.CreateAsync(await Problems.ReadJsonAsync<UsersPost>(http.Request), ct);
            return TypedResults.Created($"/api/v1/users/{created.User.Name}", created);
        })
            .Accepts<UsersPost>("application/json").Requires("user", "create");
        users.MapPost("/{name}/disable", (UserService s, HttpContext http, string name, CancellationToken ct) => s.SetDisabledAsync(name, true, Caller.Of(http), ct))
            .Requires("user", "disable");
        users.MapPost("/{name}/enable", (UserService s, HttpContext http, string name, CancellationToken ct) => s.SetDisabledAsync(name, false, Caller.Of(http), ct))
            .Requires("user", "disable");
        users.MapDelete("/{name}", async (UserService s, InstanceService instances, Clusters.ClusterService clusters, QuotaService quotas, HttpContext http,
            string name, string? resources, string? to, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            // Clusters first: their teardown deletes their members and networks, then the user's other instances go.
            await s.DeleteAsync(name, resources, to, caller, async (ownerId, c) =>
            {
                await clusters.DeleteAllOwnedAsync(caller, ownerId, c);
                await instances.DeleteAllOwnedAsync(caller, ownerId, c);
            }, quotas, ct);
            return TypedResults.NoContent();
        }).Requires("user", "delete");

        var projects = api.MapGroup("/projects").WithTags("projects");
        projects.MapGet("/", (ProjectService s, HttpContext http, CancellationToken ct) => s.ListAsync(Caller.Of(http), ct)).Requires("project", "list");
        projects.MapPost("/", async (ProjectService s, HttpContext http, CancellationToken ct) =>
            TypedResults.Created((string?)null, await s.CreateAsync(await Problems.ReadJsonAsync<ProjectsPost>(http.Request), Caller.Of(http), ct)))
            .Accepts<ProjectsPost>("application/json").Requires("project", "create");
        projects.MapPost("/{name}/members", async (ProjectService s, HttpContext http, string name, CancellationToken ct) =>
            await s.SetMemberAsync(name, (await Problems.ReadJsonAsync<MemberPost>(http.Request))?.User, add: true, Caller.Of(http), ct))
            .Accepts<MemberPost>("application/json").Requires("project", "member");
        projects.MapDelete("/{name}/members/{user}", (ProjectService s, HttpContext http, string name, string user, CancellationToken ct) =>
            s.SetMemberAsync(name, user, add: false, Caller.Of(http), ct)).Requires("project", "member");

        var quotas = api.MapGroup("/quotas").WithTags("quotas");
        quotas.MapGet("/{scope}/{name}", async (QuotaService s, UserService users, HttpContext http, string scope, string name, CancellationToken ct) =>
        {
            var caller = Caller.Of(http);
            var mine = scope == "user" ? name == caller.UserName : scope == "project" && (await users.ProjectsOfAsync(caller.UserId!, ct)).Contains(name);
            if (!caller.IsAdmin && !mine) throw ProblemException.NotFound(scope, name);
            return await s.ShowAsync(scope, name, ct);
        }).Requires("quota", "get");
        quotas.MapPut("/{scope}/{name}", async (QuotaService s, HttpContext http, string scope, string name, CancellationToken ct) =>
            await s.SetAsync(scope, name, await Problems.ReadJsonAsync<QuotaPut>(http.Request), ct))
            .Accepts<QuotaPut>("application/json").Requires("quota", "set");
    }
}
