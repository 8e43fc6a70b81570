using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Networking;

public sealed class NetworkEndpointsTests : ServerWithNode
{
    public static TheoryData<string?, string> BadSubnets => new()
    {
        { null, "required" },
        { "", "required" },
        { "10.42.0.0", "CIDR form" },
        { "10.42.0.1/24", "host bits" },
        { "10.42.0.0/33", "prefix length" },
        { "10.42.0.0/-1", "prefix length" },
        { "10.42.0.0/ 24", "prefix length" },
        { "10.42/16", "not an IPv4 address" },
        { "300.1.2.0/24", "not an IPv4 address" },
        { "fd00::/64", "not an IPv4 address" },
        { "10.0.0.0/8", "not supported" },
        { "10.42.0.0/30", "not supported" },
        { "127.0.0.0/24", "loopback" },
        { "169.254.0.0/16", "link-local" },
        { "224.0.0.0/24", "multicast" },
    };

    [Theory]
    [MemberData(nameof(BadSubnets))]
    public async Task Create_WithBadSubnet_Returns400NamingTheSubnetAndCreatesNothing(string? subnet, string expected)
    {
        var problem = await (await PostAsync(new NetworksPost { Name = "lab-net", Subnet = subnet })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal(["subnet"], problem.Errors!.Keys);
        Assert.Contains(expected, problem.Errors["subnet"][0], StringComparison.Ordinal);
        Assert.Empty(await ListAsync());
    }

    [Theory]
    [InlineData("Lab")]
    [InlineData("lab_net")]
    [InlineData("")]
    public async Task Create_WithBadName_Returns400(string name)
    {
        var problem = await (await PostAsync(new NetworksPost { Name = name, Subnet = "10.42.0.0/24" })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal(["name"], problem.Errors!.Keys);
    }

    [Theory]
    [InlineData("lab..internal")]
    [InlineData("-lab.internal")]
    [InlineData("lab internal")]
    public async Task Create_WithBadDnsDomain_Returns400(string domain)
    {
        var problem = await (await PostAsync(new NetworksPost { Name = "lab-net", Subnet = "10.42.0.0/24", DnsDomain = domain }))
            .AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal(["dnsDomain"], problem.Errors!.Keys);
    }

    [Fact]
    public async Task Create_ReturnsTheNetworkWithItsGateway()
    {
        using var response = await PostAsync(new NetworksPost { Name = "lab-net", Subnet = "10.42.0.0/24", Nat = true, DnsDomain = "lab.internal" });

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var n = (await response.Content.ReadFromJsonAsync<Network>(Problems.Json))!;
        Assert.Equal(("lab-net", "10.42.0.0/24", "10.42.0.1", true, "lab.internal"), (n.Name, n.Subnet, n.Gateway, n.Nat, n.DnsDomain));
        Assert.Equal("lab-net", Assert.Single(await ListAsync()).Name);
    }

    [Theory]
    [InlineData("10.42.0.0/24")]
    [InlineData("10.42.0.128/25")]
    [InlineData("10.42.0.0/16")]
    public async Task Create_OverlappingAnotherNetworkOfTheProject_Returns409SubnetOverlap(string subnet)
    {
        (await PostAsync(new NetworksPost { Name = "first", Subnet = "10.42.0.0/24" })).EnsureSuccessStatusCode();

        var problem = await (await PostAsync(new NetworksPost { Name = "second", Subnet = subnet })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.SubnetOverlap);

        Assert.Contains("'first' (10.42.0.0/24)", problem.Detail, StringComparison.Ordinal);
        Assert.Equal(["first"], (await ListAsync()).Select(n => n.Name));
    }

    [Fact]
    public async Task Create_AdjacentSubnetInTheSameProject_IsAllowed()
    {
        (await PostAsync(new NetworksPost { Name = "first", Subnet = "10.42.0.0/24" })).EnsureSuccessStatusCode();

        using var response = await PostAsync(new NetworksPost { Name = "second", Subnet = "10.42.1.0/24" });

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    [Fact]
    public async Task Create_SameSubnetAndNameInAnotherProject_IsAllowed()
    {
        await Server.AddProjectAsync("lab");
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" })).EnsureSuccessStatusCode();

        using var response = await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" }, "lab");

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Single(await ListAsync("lab"));
    }

    [Fact]
    public async Task Create_DuplicateName_Returns409Conflict()
    {
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" })).EnsureSuccessStatusCode();

        await (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.43.0.0/24" })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
    }

    [Fact]
    public async Task Instances_GetDistinctAddressesAndMacs_AndTheNodeIsToldAboutTheNetwork()
    {
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/29", DnsDomain = "lab.internal" })).EnsureSuccessStatusCode();

        foreach (var name in new[] { "a", "b", "c" })
            await WaitAsync(await CreateInstanceAsync(name, "lan"));

        var instances = (await Server.Client.GetFromJsonAsync<List<Instance>>("/api/v1/instances", Problems.Json))!;
        var nics = instances.Select(i => Assert.Single(i.Nics)).ToList();
        Assert.Equal(["10.42.0.2", "10.42.0.3", "10.42.0.4"], nics.Select(n => n.Address));
        Assert.Equal(3, nics.Select(n => n.Mac).Distinct().Count());
        Assert.All(nics, n => Assert.Matches("^52:54:00(:[0-9a-f]{2}){3}$", n.Mac));
        var desired = await ActivatorUtilities.CreateInstance<AgentControlService>(Server.App.Services).DesiredAsync(Agent.NodeId, CancellationToken.None);
        var network = Assert.Single(desired.Networks);
        Assert.Equal(("lan", "10.42.0.0/29", "10.42.0.1", "lab.internal"), (network.Name, network.Subnet, network.Gateway, network.DnsDomain));
        Assert.Equal(["a", "b", "c"], network.Hosts.Select(h => h.Name));
        Assert.All(desired.Instances, i => Assert.Equal(network.Id, Assert.Single(i.Nics).NetworkId));
    }

    [Fact]
    public async Task Create_WhenTheSubnetIsFull_Returns409AndCreatesNoInstance()
    {
        // A /29 has 6 hosts: the gateway and 5 guests.
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/29" })).EnsureSuccessStatusCode();
        for (var i = 0; i < 5; i++)
            await WaitAsync(await CreateInstanceAsync($"g{i}", "lan"));

        using var response = await Server.CreateAsync(new InstancesPost { Name = "g5", Memory = "64M", Network = "lan", Stopped = true });

        await response.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.AddressesExhausted);
        Assert.Equal(5, await Server.CountInstancesAsync());
    }

    [Fact]
    public async Task CreateInstance_OnAnUnknownNetwork_Returns400AndCreatesNothing()
    {
        using var response = await Server.CreateAsync(new InstancesPost { Name = "a", Memory = "64M", Network = "nope", Stopped = true });

        var problem = await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
        Assert.Equal(["network"], problem.Errors!.Keys);
        Assert.Equal(0, await Server.CountInstancesAsync());
    }

    [Fact]
    public async Task CreateInstance_OnAnotherProjectsNetwork_Returns400()
    {
        await Server.AddProjectAsync("lab");
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" }, "lab")).EnsureSuccessStatusCode();

        using var response = await Server.CreateAsync(new InstancesPost { Name = "a", Memory = "64M", Network = "lan", Stopped = true });

        await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
    }

    [Fact]
    public async Task Delete_WhileAnInstanceUsesIt_Returns409NetworkInUse_ThenSucceedsAfterTheInstanceIsDeleted()
    {
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" })).EnsureSuccessStatusCode();
        await WaitAsync(await CreateInstanceAsync("a", "lan"));

        var problem = await (await Server.Client.DeleteAsync("/api/v1/networks/lan")).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.NetworkInUse);
        Assert.Contains("'a'", problem.Detail, StringComparison.Ordinal);
        Assert.Single(await ListAsync());

        using var deleted = await Server.Client.DeleteAsync("/api/v1/instances/a");
        await WaitAsync((await deleted.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);
        Assert.Equal(0L, await Server.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM network_addresses"), CancellationToken.None));

        using var again = await Server.Client.DeleteAsync("/api/v1/networks/lan");
        Assert.Equal(HttpStatusCode.NoContent, again.StatusCode);
        Assert.Empty(await ListAsync());
    }

    [Fact]
    public async Task DeletedInstance_ReleasesItsAddressForTheNextOne()
    {
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" })).EnsureSuccessStatusCode();
        await WaitAsync(await CreateInstanceAsync("a", "lan"));
        await WaitAsync(await CreateInstanceAsync("b", "lan"));
        using var deleted = await Server.Client.DeleteAsync("/api/v1/instances/a");
        await WaitAsync((await deleted.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        await WaitAsync(await CreateInstanceAsync("c", "lan"));

        var network = (await Server.Client.GetFromJsonAsync<Network>("/api/v1/networks/lan", Problems.Json))!;
        Assert.Equal([("10.42.0.2", "c"), ("10.42.0.3", "b")], network.Addresses.Select(a => (a.Address, a.Instance)));
    }

    [Fact]
    public async Task OverlappingSubnetsOfTwoProjects_AreNeverPlacedOnOneNode()
    {
        await Server.AddProjectAsync("lab");
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" })).EnsureSuccessStatusCode();
        (await PostAsync(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/25" }, "lab")).EnsureSuccessStatusCode();
        await WaitAsync(await CreateInstanceAsync("a", "lan"));

        // One node, already hosting the overlapping network: refused, saying why.
        using (var refused = await Server.Client.PostAsync("/api/v1/instances?project=lab",
            JsonContent.Create(new InstancesPost { Name = "b", Memory = "64M", Network = "lan", Stopped = true }, options: Problems.Json)))
        {
            var problem = await refused.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.NoCapacity);
            Assert.Contains("overlaps 10.42.0.0/25", problem.Detail, StringComparison.Ordinal);
        }
        Assert.Equal(1, await Server.CountInstancesAsync());

        // With a second node the scheduler puts it there.
        await Server.AddNodeAsync("node-b");
        using var placed = await Server.Client.PostAsync("/api/v1/instances?project=lab",
            JsonContent.Create(new InstancesPost { Name = "b", Memory = "64M", Network = "lan", Stopped = true }, options: Problems.Json));
        // Placement is part of the create write; node-b has no agent, so the operation itself stays open.
        Assert.Equal(HttpStatusCode.Accepted, placed.StatusCode);
        var b = (await Server.Client.GetFromJsonAsync<Instance>("/api/v1/instances/b?project=lab", Problems.Json))!;
        Assert.Equal("node-b", b.Node);
    }

    [Fact]
    public async Task Get_UnknownNetwork_Returns404()
    {
        await (await Server.Client.GetAsync("/api/v1/networks/nope")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await Server.Client.DeleteAsync("/api/v1/networks/nope")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    private Task<HttpResponseMessage> PostAsync(NetworksPost body, string? project = null) =>
        Server.Client.PostAsync(project is null ? "/api/v1/networks" : $"/api/v1/networks?project={project}", JsonContent.Create(body, options: Problems.Json));

    private async Task<List<Network>> ListAsync(string? project = null) =>
        (await Server.Client.GetFromJsonAsync<List<Network>>(project is null ? "/api/v1/networks" : $"/api/v1/networks?project={project}", Problems.Json))!;
}
