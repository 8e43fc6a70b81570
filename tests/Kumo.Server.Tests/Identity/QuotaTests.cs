using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>Quotas are checked in the write that places the instance, so parallel creates cannot overshoot.</summary>
public sealed class QuotaTests : ServerWithNode
{
    [Fact]
    public async Task FiftyParallelCreates_WithVmQuotaOfFour_ExactlyFourSucceed()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        await Server.SetQuotaAsync("user", "alice", new QuotaPut { Vms = 4 });

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => CreateAsync(alice, $"vm-{i}")));

        Assert.Equal(4, responses.Count(r => r.StatusCode == HttpStatusCode.Accepted));
        var refused = responses.Where(r => r.StatusCode != HttpStatusCode.Accepted).ToList();
        Assert.Equal(46, refused.Count);
        foreach (var r in refused)
        {
            var problem = await r.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);
            Assert.Equal(["vms"], problem.Errors!.Keys);
            Assert.Equal("user 'alice' quota for vms exceeded: 4 VMs in use of 4", problem.Detail);
        }
        var owned = await Server.Database.ReadAsync(c => c.ExecuteScalar<long>(
            "SELECT count(*) FROM instances WHERE owner_id = (SELECT id FROM users WHERE name = 'alice')"), CancellationToken.None);
        Assert.Equal(4, owned);
        var quota = await alice.GetFromJsonAsync<Quota>("/api/v1/quotas/user/alice", Problems.Json);
        Assert.Equal((4, 4), (quota!.Used.Vms, quota.Limits.Vms));
    }

    [Fact]
    public async Task FiftyParallelContainerCreates_WithContainerQuotaOfEight_ExactlyEightSucceed_AndTheRestLeaveNothing()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        await Server.SetQuotaAsync("user", "alice", new QuotaPut { Containers = 8 });
        var operationsBefore = await Server.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM operations"), CancellationToken.None);

        // Each publishes a port: host ports are taken in the same write, so a refused create must not hold one.
        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => alice.PostAsync("/api/v1/instances",
            JsonContent.Create(new InstancesPost { Name = $"ct-{i}", Type = "container", Memory = "16M", Ports = [80], Stopped = true }, options: Problems.Json))));

        Assert.Equal(8, responses.Count(r => r.StatusCode == HttpStatusCode.Accepted));
        var refused = responses.Where(r => r.StatusCode != HttpStatusCode.Accepted).ToList();
        Assert.Equal(42, refused.Count);
        foreach (var r in refused)
        {
            var problem = await r.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);
            Assert.Equal(["containers"], problem.Errors!.Keys);
            Assert.Equal("user 'alice' quota for containers exceeded: 8 containers in use of 8", problem.Detail);
        }
        var owned = await Server.Database.ReadAsync(c => c.Query<(string Type, string Container)>(
            "SELECT type, container FROM instances WHERE owner_id = (SELECT id FROM users WHERE name = 'alice')").ToList(), CancellationToken.None);
        Assert.Equal(8, owned.Count);
        Assert.All(owned, o => Assert.Equal("container", o.Type));
        var hostPorts = owned.SelectMany(o => Kumo.Server.Storage.Json.Container(o.Container)!.Ports).Select(p => p.HostPort).Order().ToList();
        Assert.Equal(Enumerable.Range(20000, 8), hostPorts);
        var operationsAfter = await Server.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM operations"), CancellationToken.None);
        Assert.Equal(8, operationsAfter - operationsBefore);
        var quota = await alice.GetFromJsonAsync<Quota>("/api/v1/quotas/user/alice", Problems.Json);
        Assert.Equal((8, 8, 0), (quota!.Used.Containers, quota.Limits.Containers, quota.Used.Vms));
    }

    [Fact]
    public async Task Create_BeyondTheVcpuQuota_Returns403NamingVcpusAndTheUsage()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        await Server.SetQuotaAsync("user", "alice", new QuotaPut { Vcpus = 3 });
        Assert.Equal(HttpStatusCode.Accepted, (await CreateAsync(alice, "first", cpus: 2)).StatusCode);

        var problem = await (await CreateAsync(alice, "second", cpus: 2)).AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);

        Assert.Equal(["vcpus"], problem.Errors!.Keys);
        Assert.Equal("user 'alice' quota for vcpus exceeded: 2 vCPUs (+2 asked) in use of 3", problem.Detail);
    }

    [Fact]
    public async Task Create_BeyondTheMemoryQuota_Returns403NamingMemoryAndTheUsage()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        await Server.SetQuotaAsync("user", "alice", new QuotaPut { Memory = "1G" });
        Assert.Equal(HttpStatusCode.Accepted, (await CreateAsync(alice, "first", memory: "768M")).StatusCode);

        var problem = await (await CreateAsync(alice, "second", memory: "512M")).AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);

        Assert.Equal(["memory"], problem.Errors!.Keys);
        Assert.Equal("user 'alice' quota for memory exceeded: 768M (+512M asked) in use of 1G", problem.Detail);
    }

    [Fact]
    public async Task ProjectQuota_IsChargedAcrossItsMembers()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        using var bob = Server.ClientFor(await Server.AddUserAsync("bob", "bob-password"));
        await Server.AddProjectAsync("lab1", "alice", "bob");
        await Server.SetQuotaAsync("project", "lab1", new QuotaPut { Vms = 2 });
        Assert.Equal(HttpStatusCode.Accepted, (await CreateAsync(alice, "a1", project: "lab1")).StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await CreateAsync(bob, "b1", project: "lab1")).StatusCode);

        var problem = await (await CreateAsync(alice, "a2", project: "lab1")).AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);

        Assert.Equal("project 'lab1' quota for vms exceeded: 2 VMs in use of 2", problem.Detail);
        await (await CreateAsync(bob, "b2", project: "lab1")).AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);
        // Alice's own quota (default 4 VMs) still has room outside the project.
        Assert.Equal(HttpStatusCode.Accepted, (await CreateAsync(alice, "a2")).StatusCode);
        var quota = await alice.GetFromJsonAsync<Quota>("/api/v1/quotas/project/lab1", Problems.Json);
        Assert.Equal(2, quota!.Used.Vms);
    }

    private static Task<HttpResponseMessage> CreateAsync(HttpClient client, string name, int cpus = 1, string memory = "64M", string? project = null) =>
        client.PostAsync(project is null ? "/api/v1/instances" : $"/api/v1/instances?project={project}",
            JsonContent.Create(new InstancesPost { Name = name, Cpus = cpus, Memory = memory, Stopped = true }, options: Problems.Json));
}
