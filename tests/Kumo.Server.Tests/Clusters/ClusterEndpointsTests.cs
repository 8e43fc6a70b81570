using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Clusters;

public sealed class ClusterEndpointsTests : ClusterTestBase
{
    [Fact]
    public async Task Create_MakesNetworksMembersAndAForward_AndTheOperationEndsWhenAllMembersRun()
    {
        var op = await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 2, NodeMemory = "128M", Subnet = "10.66.1.0/24" }));

        var cluster = await GetAsync("hpc");
        Assert.Equal((ClusterStates.Ready, "all 3 members running"), (cluster.State, op.Message));
        Assert.Equal(["hpc-fe", "hpc-n1", "hpc-n2"], cluster.Members.Select(m => m.Name));
        Assert.All(cluster.Members, m => Assert.Equal(InstanceStates.Running, m.State));
        Assert.Equal(["10.66.1.2", "10.66.1.3", "10.66.1.4"], cluster.Members.Select(m => m.PrivateAddress));
        var frontend = cluster.Members[0];
        Assert.Equal(("frontend", "10.224.0.2"), (frontend.Role, frontend.ExternalAddress));
        Assert.All(cluster.Members.Skip(1), m => Assert.Null(m.ExternalAddress));
        Assert.Equal((2000, 22), (cluster.PublicPort, cluster.ExposePort));
        var networks = await Server.Client.GetFromJsonAsync<List<Network>>("/api/v1/networks", Problems.Json);
        Assert.Equal([("hpc-ext", "10.224.0.0/24", true), ("hpc-net", "10.66.1.0/24", false)], networks!.Select(n => (n.Name, n.Subnet, n.Nat)));

        // The node is told to give the frontend two NICs (outside first) and each compute node one.
        var desired = await ActivatorUtilities.CreateInstance<AgentControlService>(Server.App.Services).DesiredAsync(Agent.NodeId, CancellationToken.None);
        Assert.Equal(2, desired.Networks.Count);
        Assert.Equal(3, desired.Instances.Count);
        var forward = Assert.Single(desired.Networks.Single(n => n.Subnet == "10.224.0.0/24").Forwards);
        Assert.Equal((2000, "10.224.0.2", 22), (forward.PublicPort, forward.Address, forward.Port));
    }

    public static TheoryData<ClustersPost, string, string> BadRequests => new()
    {
        { new ClustersPost { Name = "c", Nodes = 0 }, "nodes", "between 1 and 64, got 0" },
        { new ClustersPost { Name = "c", Nodes = 10_000 }, "nodes", "between 1 and 64, got 10000" },
        { new ClustersPost { Name = "c" }, "nodes", "nodes is required" },
        { new ClustersPost { Name = "Bad Name", Nodes = 1 }, "name", "cluster name" },
        { new ClustersPost { Name = new string('a', 51), Nodes = 1 }, "name", "the limit is 50" },
        { new ClustersPost { Name = "c", Nodes = 1, Subnet = "10.66.0.1/24" }, "subnet", "host bits" },
        { new ClustersPost { Name = "c", Nodes = 8, Subnet = "10.66.0.0/29" }, "subnet", "room for 5 guests; the cluster needs 9" },
        { new ClustersPost { Name = "c", Nodes = 1, NodeMemory = "lots" }, "nodeMemory", "nodeMemory" },
        { new ClustersPost { Name = "c", Nodes = 1, FrontendCpus = 0 }, "frontendCpus", "between 1 and 64" },
        { new ClustersPost { Name = "c", Nodes = 1, ExposePort = 70000 }, "exposePort", "between 1 and 65535" },
        { new ClustersPost { Name = "c", Nodes = 1, Start = DateTimeOffset.UtcNow.AddHours(2), End = DateTimeOffset.UtcNow.AddHours(1) }, "end", "is before start" },
        { new ClustersPost { Name = "c", Nodes = 1, Start = DateTimeOffset.UtcNow.AddHours(-3), End = DateTimeOffset.UtcNow.AddHours(-2) }, "end", "in the past" },
        { new ClustersPost { Name = "c", Nodes = 1, Start = DateTimeOffset.UtcNow.AddHours(-3), End = DateTimeOffset.UtcNow.AddHours(2) }, "start", "in the past" },
        { new ClustersPost { Name = "c", Nodes = 1, Start = DateTimeOffset.UtcNow.AddHours(1) }, "end", "needs an end time" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Create_WithBadInput_Returns400NamingTheField_AndCreatesNothing(ClustersPost body, string field, string expected)
    {
        var problem = await (await PostAsync(body)).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Contains(field, problem.Errors!.Keys);
        Assert.Contains(expected, problem.Errors[field][0], StringComparison.Ordinal);
        await AssertNothingLeftAsync();
    }

    [Fact]
    public async Task Create_WithAnUnknownImage_Returns400_AndCreatesNothing()
    {
        var problem = await (await PostAsync(new ClustersPost { Name = "c", Nodes = 1, NodeImage = "no-such-image" }))
            .AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Contains("'no-such-image' does not exist", problem.Errors!["nodeImage"][0], StringComparison.Ordinal);
        await AssertNothingLeftAsync();
    }

    [Fact]
    public async Task Create_OverTheUsersVmQuota_IsRefusedSayingWhatTheClusterNeeds_AndLeavesNothing()
    {
        var token = await Server.AddUserAsync("alice", "alice-password");
        using var alice = Server.ClientFor(token);

        // The default quota is 4 VMs: a frontend and 4 nodes are 5.
        using var response = await alice.PostAsJsonAsync("/api/v1/clusters", new ClustersPost { Name = "class", Nodes = 4, NodeMemory = "64M", FrontendMemory = "64M" }, Problems.Json);
        var problem = await response.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded);

        Assert.Contains("cluster 'class' needs 5 VMs (1 frontend + 4 nodes)", problem.Detail, StringComparison.Ordinal);
        Assert.Contains("quota for vms exceeded: 4 VMs in use of 4", problem.Detail, StringComparison.Ordinal);
        Assert.Contains("raise your quota or to give the project a quota", problem.Detail, StringComparison.Ordinal);
        await AssertNothingLeftAsync();
    }

    [Fact]
    public async Task Create_TwiceWithTheSameName_Returns409_AndKeepsTheFirst()
    {
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 1, NodeMemory = "64M" }));

        var problem = await (await PostAsync(new ClustersPost { Name = "hpc", Nodes = 1 })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);

        Assert.Contains("a cluster named 'hpc' already exists", problem.Detail, StringComparison.Ordinal);
        Assert.Equal(2, (await GetAsync("hpc")).Members.Count);
    }

    [Fact]
    public async Task Scale_UpAddsNumberedNodes_AndDownRemovesTheHighestNumbered()
    {
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 1, NodeMemory = "64M" }));

        await WaitAsync(await ScaleAsync("hpc", 3));
        Assert.Equal(["hpc-fe", "hpc-n1", "hpc-n2", "hpc-n3"], (await GetAsync("hpc")).Members.Select(m => m.Name));

        await WaitAsync(await ScaleAsync("hpc", 2));
        var cluster = await GetAsync("hpc");
        Assert.Equal((ClusterStates.Ready, 2), (cluster.State, cluster.Nodes));
        Assert.Equal(["hpc-fe", "hpc-n1", "hpc-n2"], cluster.Members.Select(m => m.Name));
    }

    [Theory]
    [InlineData(0, "between 1 and 64, got 0")]
    [InlineData(65, "between 1 and 64, got 65")]
    public async Task Scale_OutOfRange_Returns400_AndChangesNothing(int nodes, string expected)
    {
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 1, NodeMemory = "64M" }));

        using var response = await Server.Client.PostAsJsonAsync("/api/v1/clusters/hpc/scale", new ClusterScale { Nodes = nodes }, Problems.Json);
        var problem = await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Contains(expected, problem.Errors!["nodes"][0], StringComparison.Ordinal);
        Assert.Equal(2, (await GetAsync("hpc")).Members.Count);
    }

    [Fact]
    public async Task Delete_RemovesMembersForwardAndNetworks_AndThenTheCluster()
    {
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 2, NodeMemory = "64M" }));

        using var response = await Server.Client.DeleteAsync("/api/v1/clusters/hpc");
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        await WaitAsync((await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        await AssertNothingLeftAsync();
        using var gone = await Server.Client.GetAsync("/api/v1/clusters/hpc");
        await gone.AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task DeletingOneMember_WithoutForce_IsRefusedPointingAtTheClusterCommands()
    {
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 1, NodeMemory = "64M" }));

        using var response = await Server.Client.DeleteAsync("/api/v1/instances/hpc-n1");
        var problem = await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState);

        Assert.Contains("member of a virtual cluster; use kumo cluster scale", problem.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AMemberRemovedByForce_MakesAReadyClusterDegraded()
    {
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 2, NodeMemory = "64M" }));

        using var response = await Server.Client.DeleteAsync("/api/v1/instances/hpc-n2?force=true");
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);

        var cluster = await PollAsync("hpc", c => c.State == ClusterStates.Degraded);
        Assert.Contains("2 of 3 members running", cluster.Message, StringComparison.Ordinal);
        Assert.Contains(cluster.Events, e => e.Kind == "degraded");
    }

    [Fact]
    public async Task Show_GivesEachMembersLatestMonitoringSample()
    {
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "hpc", Nodes = 1, NodeMemory = "64M" }));
        var instances = (await Server.Client.GetFromJsonAsync<List<Instance>>("/api/v1/instances", Problems.Json))!;
        var node = instances.Single(i => i.Name == "hpc-n1").Id;

        await Agent.ReportMetricsAsync(Monitoring.MetricsTests.Report(Monitoring.MetricsTests.Node(busy: 10, idle: 10),
            Monitoring.MetricsTests.Guest(node, "boot/1", cpu: 4, rss: 48 * ByteSize.MiB)));

        var members = (await GetAsync("hpc")).Members;
        Assert.Equal(48 * ByteSize.MiB, members.Single(m => m.Name == "hpc-n1").Latest!.MemoryRssBytes);
        Assert.Null(members.Single(m => m.Name == "hpc-fe").Latest);
    }

    private async Task AssertNothingLeftAsync()
    {
        Assert.Equal(0L, await Server.CountInstancesAsync());
        using var c = Server.Database.Open();
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM networks"));
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM network_addresses"));
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM port_forwards"));
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM clusters"));
    }

    private async Task<Operation> ScaleAsync(string name, int nodes)
    {
        using var response = await Server.Client.PostAsJsonAsync($"/api/v1/clusters/{name}/scale", new ClusterScale { Nodes = nodes }, Problems.Json);
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
    }
}
