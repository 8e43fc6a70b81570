using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>Deleting a user deletes or reassigns what they own, never orphans it.</summary>
public sealed class UserDeletionTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private TestServer _server = null!;
    private HttpClient _alice = null!;
    private HttpClient _bob = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        _alice = _server.ClientFor(await _server.AddUserAsync("alice", "alice-password"));
        _bob = _server.ClientFor(await _server.AddUserAsync("bob", "bob-password"));
    }

    public async Task DisposeAsync()
    {
        _alice.Dispose();
        _bob.Dispose();
        await _server.DisposeAsync();
    }

    [Theory]
    [InlineData("")]
    [InlineData("?resources=keep")]
    [InlineData("?resources=reassign")]
    public async Task Delete_UserWhoOwnsInstances_WithoutAValidChoice_Returns409AndKeepsEverything(string query)
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        await CreateAsync(_alice, "a1");

        using var response = await _server.Client.DeleteAsync("/api/v1/users/alice" + query);

        if (query.EndsWith("reassign", StringComparison.Ordinal))
            await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation); // no 'to'
        else
            Assert.Contains("resources=delete or resources=reassign", (await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState)).Detail);
        Assert.Equal(HttpStatusCode.OK, (await _alice.GetAsync("/api/v1/auth/whoami")).StatusCode);
        Assert.Equal(["a1"], await NamesAsync(_alice));
    }

    [Fact]
    public async Task Delete_WithReassign_GivesTheInstancesToTheTarget_PersonalOnesInTheirProject()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        await _server.AddProjectAsync("lab1", "alice");
        await CreateAsync(_alice, "a1");
        await CreateAsync(_alice, "a2", project: "lab1", stopped: false);

        Assert.Equal(HttpStatusCode.NoContent, (await _server.Client.DeleteAsync("/api/v1/users/alice?resources=reassign&to=bob")).StatusCode);

        Assert.Equal(["a1"], await NamesAsync(_bob));
        var rows = await _server.Database.ReadAsync(c => c.Query<(string Name, string Project, string Owner)>(
            "SELECT i.name, i.project, u.name FROM instances i JOIN users u ON u.id = i.owner_id ORDER BY i.name").ToList(), CancellationToken.None);
        Assert.Equal([("a1", "bob", "bob"), ("a2", "lab1", "bob")], rows);
        var quota = await _bob.GetFromJsonAsync<Quota>("/api/v1/quotas/user/bob", Problems.Json);
        Assert.Equal(2, quota!.Used.Vms);
        await (await _alice.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        Assert.Equal(HttpStatusCode.NotFound, (await _server.Client.GetAsync("/api/v1/users/alice")).StatusCode);
        var projects = await _server.Client.GetFromJsonAsync<List<Project>>("/api/v1/projects", Problems.Json);
        Assert.DoesNotContain(projects!, p => p.Name == "alice");
    }

    [Fact]
    public async Task Delete_WithReassign_WhenTheTargetHasAnInstanceOfTheSameName_Returns409AndChangesNothing()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        await CreateAsync(_alice, "web");
        await CreateAsync(_bob, "web");

        using var response = await _server.Client.DeleteAsync("/api/v1/users/alice?resources=reassign&to=bob");

        await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
        Assert.Equal(["web"], await NamesAsync(_alice));
        Assert.Equal(["web"], await NamesAsync(_bob));
    }

    [Fact]
    public async Task Delete_WithReassign_BeyondTheTargetsQuota_Returns403NamingTheQuotaAndChangesNothing()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        using var put = await _server.Client.PutAsync("/api/v1/quotas/user/bob", JsonContent.Create(new QuotaPut { Vms = 1 }, options: Problems.Json));
        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        await CreateAsync(_alice, "a1");
        await CreateAsync(_bob, "b1");

        using var response = await _server.Client.DeleteAsync("/api/v1/users/alice?resources=reassign&to=bob");

        var problem = await response.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);
        Assert.Contains("user 'bob' would be over quota for vms: 2 VMs of 1", problem.Detail);
        Assert.Equal(["a1"], await NamesAsync(_alice));
        Assert.Equal(["b1"], await NamesAsync(_bob));
        Assert.Equal(HttpStatusCode.OK, (await _alice.GetAsync("/api/v1/auth/whoami")).StatusCode);
    }

    [Fact]
    public async Task Delete_WithReassign_ToAnUnknownUser_Returns400()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        await CreateAsync(_alice, "a1");

        using var response = await _server.Client.DeleteAsync("/api/v1/users/alice?resources=reassign&to=nobody");

        await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
        Assert.Equal(["a1"], await NamesAsync(_alice));
    }

    [Fact]
    public async Task Delete_WithDelete_RemovesTheInstancesOnceTheNodeConfirms()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        await _server.AddProjectAsync("lab1", "alice", "bob");
        await CreateAsync(_alice, "a1", stopped: false);
        await CreateAsync(_alice, "a2", project: "lab1");
        await CreateAsync(_bob, "b1", project: "lab1");

        Assert.Equal(HttpStatusCode.NoContent, (await _server.Client.DeleteAsync("/api/v1/users/alice?resources=delete")).StatusCode);

        var left = await _server.Database.ReadAsync(c => c.Query<string>("SELECT name FROM instances ORDER BY name").ToList(), CancellationToken.None);
        Assert.Equal(["b1"], left);
        Assert.Equal(HttpStatusCode.NotFound, (await _server.Client.GetAsync("/api/v1/users/alice")).StatusCode);
        var node = await _server.Client.GetFromJsonAsync<Node>("/api/v1/nodes/node-a", Problems.Json);
        Assert.Equal(1, node!.Instances);
    }

    [Fact]
    public async Task Delete_WithDelete_OnANodeThatIsDown_RemovesTheInstancesAtOnce()
    {
        // No agent: the node misses its heartbeats and goes down; nobody is left to confirm, so the delete does not wait.
        await _server.AddNodeAsync("node-a");
        await CreateAsync(_alice, "a1");
        await PollUntilAsync(async () => (await _server.Client.GetFromJsonAsync<Node>("/api/v1/nodes/node-a", Problems.Json))!.State == NodeStates.Down);

        Assert.Equal(HttpStatusCode.NoContent, (await _server.Client.DeleteAsync("/api/v1/users/alice?resources=delete")).StatusCode);

        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Delete_WithDelete_WhenTheNodeGoesDownWhileWaiting_FinishesWithoutWaitingForTheDeadline()
    {
        // The node is up when the delete starts, but no agent will ever confirm it: once the node is marked down
        // (10 s without heartbeats) its instances can go, as a forced delete of an instance on a down node does.
        await _server.AddNodeAsync("node-a");
        await CreateAsync(_alice, "a1");
        var watch = System.Diagnostics.Stopwatch.StartNew();

        using var response = await _server.Client.DeleteAsync("/api/v1/users/alice?resources=delete");

        Assert.True(response.StatusCode == HttpStatusCode.NoContent, $"{(int)response.StatusCode} after {watch.Elapsed}: {await response.Content.ReadAsStringAsync()}");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), $"took {watch.Elapsed}");
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Delete_WithDelete_TearsDownTheUsersClustersAndReservations_AndLeavesNoNetworkOrProject()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        using (var c = await _alice.PostAsJsonAsync("/api/v1/clusters", new ClustersPost { Name = "hpc", Nodes = 1, NodeMemory = "64M", FrontendMemory = "64M" }, Problems.Json))
            Assert.Equal(HttpStatusCode.Accepted, c.StatusCode);
        var t0 = DateTimeOffset.UtcNow.AddHours(1);
        using (var r = await _alice.PostAsJsonAsync("/api/v1/instances", new InstancesPost { Name = "exam", Memory = "64M", Start = t0, End = t0.AddHours(1) }, Problems.Json))
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);

        using var refused = await _server.Client.DeleteAsync("/api/v1/users/alice");
        Assert.Contains("2 cluster(s) or reservation(s)", (await refused.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState)).Detail);

        using var response = await _server.Client.DeleteAsync("/api/v1/users/alice?resources=delete");
        Assert.True(response.StatusCode == HttpStatusCode.NoContent, await response.Content.ReadAsStringAsync());

        var left = await _server.Database.ReadAsync(c => (
            c.ExecuteScalar<long>("SELECT count(*) FROM clusters"), c.ExecuteScalar<long>("SELECT count(*) FROM instances"),
            c.ExecuteScalar<long>("SELECT count(*) FROM networks"), c.ExecuteScalar<long>("SELECT count(*) FROM projects WHERE name = 'alice'")), CancellationToken.None);
        Assert.Equal((0L, 0L, 0L, 0L), left);
    }

    [Fact]
    public async Task Delete_WithReassign_MovesTheUsersClusterWithItsMembersAndNetworks()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        using (var c = await _alice.PostAsJsonAsync("/api/v1/clusters", new ClustersPost { Name = "hpc", Nodes = 1, NodeMemory = "64M", FrontendMemory = "64M" }, Problems.Json))
            Assert.Equal(HttpStatusCode.Accepted, c.StatusCode);

        using var response = await _server.Client.DeleteAsync("/api/v1/users/alice?resources=reassign&to=bob");
        Assert.True(response.StatusCode == HttpStatusCode.NoContent, await response.Content.ReadAsStringAsync());

        var cluster = (await _bob.GetFromJsonAsync<Cluster>("/api/v1/clusters/hpc", Problems.Json))!;
        Assert.Equal(("bob", "bob"), (cluster.Project, cluster.Owner));
        Assert.Equal(["hpc-fe", "hpc-n1"], await NamesAsync(_bob));
        var networks = (await _bob.GetFromJsonAsync<List<Network>>("/api/v1/networks", Problems.Json))!.Select(n => n.Name).Order(StringComparer.Ordinal);
        Assert.Equal(["hpc-ext", "hpc-net"], networks);
        var projects = await _server.Client.GetFromJsonAsync<List<Project>>("/api/v1/projects", Problems.Json);
        Assert.DoesNotContain(projects!, p => p.Name == "alice");
    }

    [Fact]
    public async Task Delete_WithReassign_KeepsThePersonalProjectWhileANetworkIsLeftInIt()
    {
        await using var agent = await FakeAgent.StartAsync(_server, "node-a");
        using (var n = await _alice.PostAsJsonAsync("/api/v1/networks", new NetworksPost { Name = "lan", Subnet = "10.90.7.0/24" }, Problems.Json))
            Assert.Equal(HttpStatusCode.Created, n.StatusCode);
        await CreateAsync(_alice, "a1");

        Assert.Equal(HttpStatusCode.NoContent, (await _server.Client.DeleteAsync("/api/v1/users/alice?resources=reassign&to=bob")).StatusCode);

        var projects = await _server.Client.GetFromJsonAsync<List<Project>>("/api/v1/projects", Problems.Json);
        Assert.Contains(projects!, p => p.Name == "alice");
        Assert.Equal(1L, await _server.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM networks WHERE project = 'alice'"), CancellationToken.None));
    }

    private static async Task CreateAsync(HttpClient client, string name, string? project = null, bool stopped = true)
    {
        using var response = await client.PostAsync(project is null ? "/api/v1/instances" : $"/api/v1/instances?project={project}",
            JsonContent.Create(new InstancesPost { Name = name, Memory = "64M", Stopped = stopped }, options: Problems.Json));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
    }

    private static async Task<List<string>> NamesAsync(HttpClient client) =>
        (await client.GetFromJsonAsync<List<Instance>>("/api/v1/instances", Problems.Json))!.Select(i => i.Name).ToList();

    private static async Task PollUntilAsync(Func<Task<bool>> done)
    {
        var deadline = DateTimeOffset.UtcNow + Deadline;
        while (!await done())
        {
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"condition not met within {Deadline}");
            await Task.Delay(200);
        }
    }
}
