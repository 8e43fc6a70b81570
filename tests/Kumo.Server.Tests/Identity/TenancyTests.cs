using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>Users and projects: who exists, who sees what, and names that users and projects share.</summary>
public sealed class TenancyTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private FakeAgent _agent = null!;
    private HttpClient _alice = null!;
    private HttpClient _bob = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        _agent = await FakeAgent.StartAsync(_server, "node-a");
        _alice = _server.ClientFor(await _server.AddUserAsync("alice", "alice-password"));
        _bob = _server.ClientFor(await _server.AddUserAsync("bob", "bob-password"));
    }

    public async Task DisposeAsync()
    {
        _alice.Dispose();
        _bob.Dispose();
        await _agent.DisposeAsync();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task CreateUser_WithoutPassword_ReturnsAGeneratedOneOnce()
    {
        using var response = await _server.Client.PostAsync("/api/v1/users", Json(new UsersPost { Name = "carol" }));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var created = (await response.Content.ReadFromJsonAsync<UserCreated>(Problems.Json))!;
        Assert.Equal(("carol", "user"), (created.User.Name, created.User.Role));
        Assert.Equal(20, created.Password!.Length);
        Assert.NotEmpty(await _server.LoginAsync("carol", created.Password));
        Assert.DoesNotContain(created.Password, await _server.Client.GetStringAsync("/api/v1/users/carol"));
        Assert.DoesNotContain(created.Password, await _server.Client.GetStringAsync("/api/v1/users"));
    }

    [Fact]
    public async Task CreateUser_WithAPassword_ReturnsNoPassword()
    {
        using var response = await _server.Client.PostAsync("/api/v1/users", Json(new UsersPost { Name = "carol", Password = "carol-password" }));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Null((await response.Content.ReadFromJsonAsync<UserCreated>(Problems.Json))!.Password);
    }

    [Fact]
    public async Task CreateUser_WithDuplicateName_Returns409()
    {
        using var response = await _server.Client.PostAsync("/api/v1/users", Json(new UsersPost { Name = "alice" }));

        await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
    }

    [Fact]
    public async Task ListUsers_AsUser_Returns403()
    {
        await (await _alice.GetAsync("/api/v1/users")).AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.Forbidden);
    }

    [Fact]
    public async Task ListInstances_ShowsOnlyTheCallersProject()
    {
        await CreateAsync(_alice, "alices-vm");
        await CreateAsync(_bob, "bobs-vm");
        await CreateAsync(_server.Client, "admins-vm", project: "default");

        Assert.Equal(["alices-vm"], await NamesAsync(_alice));
        Assert.Equal(["bobs-vm"], await NamesAsync(_bob));
    }

    [Fact]
    public async Task AnotherUsersProject_AndTheirInstances_Return404()
    {
        await CreateAsync(_bob, "bobs-vm");

        await (await _alice.GetAsync("/api/v1/instances?project=bob")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await _alice.GetAsync("/api/v1/instances/bobs-vm?project=bob")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await _alice.GetAsync("/api/v1/instances/bobs-vm")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await _alice.PostAsync("/api/v1/instances/bobs-vm/stop?project=bob", null)).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await _alice.GetAsync("/api/v1/quotas/project/bob")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        // An unknown project answers the same, so the 404 does not tell which projects exist.
        var unknown = await (await _alice.GetAsync("/api/v1/instances?project=nobody")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        var hidden = await (await _alice.GetAsync("/api/v1/instances?project=bob")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        Assert.Equal(unknown.Detail!.Replace("nobody", "bob"), hidden.Detail);
    }

    [Fact]
    public async Task SharedProject_MembersSeeEachOthersInstances_OthersDoNot()
    {
        using var carol = _server.ClientFor(await _server.AddUserAsync("carol", "carol-password"));
        await _server.AddProjectAsync("lab1", "alice", "bob");
        var alicesOp = await CreateAsync(_alice, "alices-vm", project: "lab1");
        await CreateAsync(_bob, "bobs-vm", project: "lab1");

        Assert.Equal(["alices-vm", "bobs-vm"], await NamesAsync(_alice, "lab1"));
        Assert.Equal(["alices-vm", "bobs-vm"], await NamesAsync(_bob, "lab1"));
        Assert.Equal(HttpStatusCode.OK, (await _bob.GetAsync($"/api/v1/operations/{alicesOp.Id}")).StatusCode);
        await (await carol.GetAsync("/api/v1/instances?project=lab1")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await carol.GetAsync($"/api/v1/operations/{alicesOp.Id}")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        var projects = await carol.GetFromJsonAsync<List<Project>>("/api/v1/projects", Problems.Json);
        Assert.Equal(["carol"], projects!.Select(p => p.Name));
    }

    [Fact]
    public async Task RemovingAMember_TakesEffectOnTheirNextRequest()
    {
        await _server.AddProjectAsync("lab1", "alice", "bob");
        var alicesOp = await CreateAsync(_alice, "alices-vm", project: "lab1");
        Assert.Equal(["alices-vm"], await NamesAsync(_bob, "lab1")); // bob's membership is now cached

        Assert.Equal(HttpStatusCode.OK, (await _server.Client.DeleteAsync("/api/v1/projects/lab1/members/bob")).StatusCode);

        await (await _bob.GetAsync("/api/v1/instances?project=lab1")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await _bob.GetAsync($"/api/v1/operations/{alicesOp.Id}")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        Assert.Equal(["alices-vm"], await NamesAsync(_alice, "lab1"));
    }

    [Fact]
    public async Task AddingAMember_TakesEffectOnTheirNextRequest()
    {
        await _server.AddProjectAsync("lab1", "alice");
        await CreateAsync(_alice, "alices-vm", project: "lab1");
        await (await _bob.GetAsync("/api/v1/instances?project=lab1")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);

        Assert.Equal(HttpStatusCode.OK, (await _server.Client.PostAsync("/api/v1/projects/lab1/members", Json(new MemberPost { User = "bob" }))).StatusCode);

        Assert.Equal(["alices-vm"], await NamesAsync(_bob, "lab1"));
    }

    [Fact]
    public async Task CreateProject_NamedLikeAUser_Returns409()
    {
        using var response = await _server.Client.PostAsync("/api/v1/projects", Json(new ProjectsPost { Name = "alice" }));

        await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
    }

    [Theory]
    [InlineData("lab1")]
    [InlineData("default")]
    public async Task CreateUser_NamedLikeAProject_Returns409(string name)
    {
        await _server.AddProjectAsync("lab1");

        using var response = await _server.Client.PostAsync("/api/v1/users", Json(new UsersPost { Name = name }));

        await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
        Assert.Equal(HttpStatusCode.NotFound, (await _server.Client.GetAsync($"/api/v1/users/{name}")).StatusCode);
    }

    [Fact]
    public async Task CreateProject_WithDuplicateName_Returns409()
    {
        await _server.AddProjectAsync("lab1");

        using var response = await _server.Client.PostAsync("/api/v1/projects", Json(new ProjectsPost { Name = "lab1" }));

        await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
    }

    [Fact]
    public async Task AddMember_ToAPersonalProject_Returns409()
    {
        using var response = await _server.Client.PostAsync("/api/v1/projects/alice/members", Json(new MemberPost { User = "bob" }));

        await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState);
        await (await _bob.GetAsync("/api/v1/instances?project=alice")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    private static async Task<Operation> CreateAsync(HttpClient client, string name, string? project = null)
    {
        using var response = await client.PostAsync(project is null ? "/api/v1/instances" : $"/api/v1/instances?project={project}",
            Json(new InstancesPost { Name = name, Memory = "64M", Stopped = true }));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
    }

    private static async Task<List<string>> NamesAsync(HttpClient client, string? project = null) =>
        (await client.GetFromJsonAsync<List<Instance>>(project is null ? "/api/v1/instances" : $"/api/v1/instances?project={project}", Problems.Json))!
            .Select(i => i.Name).ToList();

    private static JsonContent Json<T>(T body) => JsonContent.Create(body, options: Problems.Json);
}
