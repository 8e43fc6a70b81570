using System.Collections.Concurrent;
using System.Net;
using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Client.Tests;

public sealed class IdentityTests
{
    private static User Alice(string role = "user") => new()
    {
        Id = "01JUALICE",
        Name = "alice",
        Role = role,
        Source = "local",
        Projects = ["alice", "lab1"],
        CreatedAt = DateTimeOffset.UtcNow,
    };

    private static Project Lab1(params string[] members) => new() { Name = "lab1", Members = members, CreatedAt = DateTimeOffset.UtcNow };

    /// <summary>Records the Authorization header of every request, keyed by "METHOD /path?query".</summary>
    private static void RecordAuthorization(WebApplication app, ConcurrentDictionary<string, string> seen) =>
        app.Use((context, next) =>
        {
            seen[$"{context.Request.Method} {context.Request.Path}{context.Request.QueryString}"] = context.Request.Headers.Authorization.ToString();
            return next(context);
        });

    [Fact]
    public async Task Token_IsSentAsBearerOnEveryCall_ButNotOnLogin()
    {
        var seen = new ConcurrentDictionary<string, string>();
        LoginRequest? sent = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            RecordAuthorization(app, seen);
            app.MapPost("/api/v1/auth/login", (LoginRequest body) =>
            {
                sent = body;
                return FakeKumod.Ok(new LoginResponse { Token = "kumo_new", ExpiresAt = DateTimeOffset.UtcNow.AddHours(12), User = Alice() });
            });
            app.MapGet("/api/v1/auth/whoami", () => FakeKumod.Ok(Alice()));
            app.MapGet("/api/v1/tokens", () => FakeKumod.Ok(Array.Empty<ApiToken>()));
        });
        using var client = new KumoClient(kumod.Url, "kumo_stale");

        await client.WhoAmIAsync();
        await client.ListTokensAsync();
        var session = await client.LoginAsync("alice", "s3cret-pass");

        Assert.Equal("Bearer kumo_stale", seen["GET /api/v1/auth/whoami"]);
        Assert.Equal("Bearer kumo_stale", seen["GET /api/v1/tokens"]);
        // A stale token on login would be refused before the credentials were even looked at.
        Assert.Equal("", seen["POST /api/v1/auth/login"]);
        Assert.Equal(new LoginRequest { Username = "alice", Password = "s3cret-pass" }, sent);
        Assert.Equal("kumo_new", session.Token);
        Assert.Equal("alice", session.User.Name);
    }

    [Fact]
    public async Task WithoutToken_SendsNoAuthorizationHeader()
    {
        var seen = new ConcurrentDictionary<string, string>();
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            RecordAuthorization(app, seen);
            app.MapGet("/api/v1/auth/whoami", () => FakeKumod.Problem(401, ProblemTypes.Unauthorized, "Not authenticated", "log in first"));
        });
        using var client = new KumoClient(kumod.Url, token: null);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.WhoAmIAsync());

        Assert.Equal(HttpStatusCode.Unauthorized, e.StatusCode);
        Assert.Equal("", seen["GET /api/v1/auth/whoami"]);
    }

    [Fact]
    public async Task Project_IsAddedToEveryInstanceRequest()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            var op = FakeKumod.Operation("01JOP", OperationStatuses.Pending);
            app.MapGet("/api/v1/instances", () => FakeKumod.Ok(new[] { FakeKumod.Instance("web") }));
            app.MapGet("/api/v1/instances/{name}", (string name) => FakeKumod.Ok(FakeKumod.Instance(name)));
            app.MapPut("/api/v1/instances/{name}", (string name) => FakeKumod.Ok(FakeKumod.Instance(name)));
            app.MapPost("/api/v1/instances", () => Results.Json(op, FakeKumod.Json, statusCode: 202));
            app.MapPost("/api/v1/instances/{name}/{action}", () => Results.Json(op, FakeKumod.Json, statusCode: 202));
            app.MapDelete("/api/v1/instances/{name}", () => Results.Json(op, FakeKumod.Json, statusCode: 202));
        });
        using var client = new KumoClient(kumod.Url, "kumo_t") { Project = "lab 1" };

        await client.ListInstancesAsync();
        await client.ListInstancesAsync(InstanceStates.Running, "vm");
        await client.GetInstanceAsync("web");
        var read = await client.GetInstanceWithETagAsync("web");
        await client.PutInstanceAsync("web", new InstancePut { Description = "x" }, read.ETag);
        await client.CreateInstanceAsync(new InstancesPost { Name = "web" });
        await client.StartInstanceAsync("web");
        await client.StopInstanceAsync("web");
        await client.RestartInstanceAsync("web");
        await client.DestroyInstanceAsync("web");
        await client.DeleteInstanceAsync("web", force: true);

        Assert.Equal(
        [
            "GET /api/v1/instances?project=lab%201",
            "GET /api/v1/instances?project=lab%201&state=running&type=vm",
            "GET /api/v1/instances/web?project=lab%201",
            "GET /api/v1/instances/web?project=lab%201",
            "PUT /api/v1/instances/web?project=lab%201",
            "POST /api/v1/instances?project=lab%201",
            "POST /api/v1/instances/web/start?project=lab%201",
            "POST /api/v1/instances/web/stop?project=lab%201",
            "POST /api/v1/instances/web/restart?project=lab%201",
            "POST /api/v1/instances/web/destroy?project=lab%201",
            "DELETE /api/v1/instances/web?force=true&project=lab%201",
        ], kumod.Requests);
    }

    [Fact]
    public async Task WithoutProject_InstanceRequestsCarryNoProjectQuery()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/instances", () => FakeKumod.Ok(Array.Empty<Instance>()));
            app.MapGet("/api/v1/instances/{name}", (string name) => FakeKumod.Ok(FakeKumod.Instance(name)));
        });
        using var client = new KumoClient(kumod.Url, "kumo_t");

        await client.ListInstancesAsync();
        await client.GetInstanceAsync("web");

        Assert.Equal(["GET /api/v1/instances", "GET /api/v1/instances/web"], kumod.Requests);
    }

    [Fact]
    public async Task SessionCalls_HitTheirRoutesWithTheirBodies()
    {
        PasswordChange? change = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapPost("/api/v1/auth/logout", () => Results.NoContent());
            app.MapPost("/api/v1/auth/password", (PasswordChange body) =>
            {
                change = body;
                return Results.NoContent();
            });
        });
        using var client = new KumoClient(kumod.Url, "kumo_t");

        await client.ChangePasswordAsync("old-password", "new-password");
        await client.LogoutAsync();

        Assert.Equal(new PasswordChange { Current = "old-password", New = "new-password" }, change);
        Assert.Equal(["POST /api/v1/auth/password", "POST /api/v1/auth/logout"], kumod.Requests);
    }

    [Fact]
    public async Task Tokens_ListCreateRevoke()
    {
        TokensPost? posted = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/tokens", () => FakeKumod.Ok(new[] { new ApiToken { Id = "01JT1", Kind = "session" } }));
            app.MapPost("/api/v1/tokens", (TokensPost body) =>
            {
                posted = body;
                return Results.Json(new ApiToken { Id = "01JT2", Name = body.Name, Kind = "api", Secret = "kumo_secret" }, FakeKumod.Json, statusCode: 201);
            });
            app.MapDelete("/api/v1/tokens/{id}", () => Results.NoContent());
        });
        using var client = new KumoClient(kumod.Url, "kumo_t");

        var listed = await client.ListTokensAsync();
        var created = await client.CreateTokenAsync(new TokensPost { Name = "ci", Ttl = "30d" });
        await client.RevokeTokenAsync("01JT2");

        Assert.Equal("01JT1", Assert.Single(listed).Id);
        Assert.Equal(new TokensPost { Name = "ci", Ttl = "30d" }, posted);
        Assert.Equal("kumo_secret", created.Secret);
        Assert.Equal("DELETE /api/v1/tokens/01JT2", kumod.Requests[^1]);
    }

    [Fact]
    public async Task Users_CreateListGetDisableEnableDelete()
    {
        UsersPost? posted = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapPost("/api/v1/users", (UsersPost body) =>
            {
                posted = body;
                return Results.Json(new UserCreated { User = Alice(), Password = "generated-once" }, FakeKumod.Json, statusCode: 201);
            });
            app.MapGet("/api/v1/users", () => FakeKumod.Ok(new[] { Alice() }));
            app.MapGet("/api/v1/users/{name}", () => FakeKumod.Ok(Alice()));
            app.MapPost("/api/v1/users/{name}/disable", () => FakeKumod.Ok(Alice() with { Disabled = true }));
            app.MapPost("/api/v1/users/{name}/enable", () => FakeKumod.Ok(Alice()));
            app.MapDelete("/api/v1/users/{name}", () => Results.NoContent());
        });
        using var client = new KumoClient(kumod.Url, "kumo_t");

        var created = await client.CreateUserAsync(new UsersPost { Name = "alice", Role = "user" });
        Assert.Single(await client.ListUsersAsync());
        await client.GetUserAsync("alice");
        Assert.True((await client.DisableUserAsync("alice")).Disabled);
        Assert.False((await client.EnableUserAsync("alice")).Disabled);
        await client.DeleteUserAsync("bob");
        await client.DeleteUserAsync("carol", "delete");
        await client.DeleteUserAsync("dave", "reassign", "alice");

        Assert.Equal(new UsersPost { Name = "alice", Role = "user" }, posted);
        Assert.Equal("generated-once", created.Password);
        Assert.Equal(
        [
            "POST /api/v1/users",
            "GET /api/v1/users",
            "GET /api/v1/users/alice",
            "POST /api/v1/users/alice/disable",
            "POST /api/v1/users/alice/enable",
            "DELETE /api/v1/users/bob",
            "DELETE /api/v1/users/carol?resources=delete",
            "DELETE /api/v1/users/dave?resources=reassign&to=alice",
        ], kumod.Requests);
    }

    [Fact]
    public async Task Projects_CreateListAddAndRemoveMembers()
    {
        var bodies = new ConcurrentQueue<object>();
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/projects", () => FakeKumod.Ok(new[] { Lab1("admin") }));
            app.MapPost("/api/v1/projects", (ProjectsPost body) =>
            {
                bodies.Enqueue(body);
                return Results.Json(Lab1("admin"), FakeKumod.Json, statusCode: 201);
            });
            app.MapPost("/api/v1/projects/{name}/members", (MemberPost body) =>
            {
                bodies.Enqueue(body);
                return FakeKumod.Ok(Lab1("admin", "alice"));
            });
            app.MapDelete("/api/v1/projects/{name}/members/{user}", () => FakeKumod.Ok(Lab1("admin")));
        });
        using var client = new KumoClient(kumod.Url, "kumo_t");

        await client.CreateProjectAsync("lab1");
        Assert.Single(await client.ListProjectsAsync());
        Assert.Equal(["admin", "alice"], (await client.AddProjectMemberAsync("lab1", "alice")).Members);
        Assert.Equal(["admin"], (await client.RemoveProjectMemberAsync("lab1", "alice")).Members);

        Assert.Equal([new ProjectsPost { Name = "lab1" }, new MemberPost { User = "alice" }], bodies);
        Assert.Equal("DELETE /api/v1/projects/lab1/members/alice", kumod.Requests[^1]);
    }

    [Fact]
    public async Task Quotas_GetAndSetByScope()
    {
        QuotaPut? put = null;
        var quota = new Quota { Scope = "project", Name = "lab1", Limits = new QuotaLimits { Vms = 20 }, Used = new QuotaLimits { Vms = 3 } };
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/quotas/{scope}/{name}", () => FakeKumod.Ok(quota));
            app.MapPut("/api/v1/quotas/{scope}/{name}", (QuotaPut body) =>
            {
                put = body;
                return FakeKumod.Ok(quota);
            });
        });
        using var client = new KumoClient(kumod.Url, "kumo_t");

        var shown = await client.GetQuotaAsync(KumoClient.UserScope, "alice");
        await client.SetQuotaAsync(KumoClient.ProjectScope, "lab1", new QuotaPut { Vms = 20, Memory = "32G" });

        Assert.Equal(20, shown.Limits.Vms);
        Assert.Equal(3, shown.Used.Vms);
        Assert.Equal(new QuotaPut { Vms = 20, Memory = "32G" }, put);
        Assert.Equal(["GET /api/v1/quotas/user/alice", "PUT /api/v1/quotas/project/lab1"], kumod.Requests);
    }

    [Fact]
    public async Task TooManyAttempts_CarriesRetryAfter()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/auth/login", (HttpContext context) =>
        {
            context.Response.Headers.RetryAfter = "120";
            return FakeKumod.Problem(429, ProblemTypes.TooManyAttempts, "Too many failed logins");
        }));
        using var client = new KumoClient(kumod.Url);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.LoginAsync("alice", "guess"));

        Assert.True(e.Is(ProblemTypes.TooManyAttempts));
        Assert.Equal(TimeSpan.FromSeconds(120), e.RetryAfter);
    }
}
