using System.Net;
using System.Net.Http.Json;
using Grpc.Core;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Networking;

/// <summary>How kumod spans a network across nodes: VNIs per network, underlay addresses per node, peers per network.</summary>
public sealed class VxlanTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private readonly List<FakeAgent> _agents = [];

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var a in _agents) await a.DisposeAsync();
        await _server.DisposeAsync();
    }

    private async Task<FakeAgent> AgentAsync(string name, string vxlan = "")
    {
        var agent = await FakeAgent.StartAsync(_server, name, cpus: 4, memoryBytes: 4 * ByteSize.GiB, vxlanAddress: vxlan);
        _agents.Add(agent);
        return agent;
    }

    private async Task<Network> CreateNetworkAsync(string name, string subnet, string? project = null)
    {
        using var r = await _server.Client.PostAsJsonAsync(project is null ? "/api/v1/networks" : $"/api/v1/networks?project={project}",
            new NetworksPost { Name = name, Subnet = subnet }, Problems.Json);
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        return (await r.Content.ReadFromJsonAsync<Network>(Problems.Json))!;
    }

    private async Task CreateOnAsync(string name, string network, string node)
    {
        using var r = await _server.CreateAsync(new InstancesPost { Name = name, Memory = "64M", Network = network, Stopped = true, Node = node });
        Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);
        await WaitAsync((await r.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);
    }

    private async Task WaitAsync(Operation op)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (!OperationStatuses.IsFinal(op.Status) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            op = (await _server.Client.GetFromJsonAsync<Operation>($"/api/v1/operations/{op.Id}", Problems.Json))!;
        }
        Assert.Equal(OperationStatuses.Succeeded, op.Status);
    }

    private Task<DesiredState> DesiredAsync(FakeAgent agent) =>
        ActivatorUtilities.CreateInstance<AgentControlService>(_server.App.Services).DesiredAsync(agent.NodeId, CancellationToken.None);

    [Fact]
    public async Task Networks_GetDistinctVnisAboveTheVlanRange_EvenAcrossProjectsWithTheSameSubnet()
    {
        await _server.AddProjectAsync("lab");

        var a = await CreateNetworkAsync("a", "10.77.1.0/24");
        var b = await CreateNetworkAsync("b", "10.77.2.0/24");
        var c = await CreateNetworkAsync("a", "10.77.1.0/24", "lab");

        Assert.Equal([4096, 4097, 4098], new[] { a.Vni, b.Vni, c.Vni });
        var shown = await _server.Client.GetFromJsonAsync<Network>("/api/v1/networks/b", Problems.Json);
        Assert.Equal(4097, shown!.Vni);
    }

    [Fact]
    public async Task DeletedNetworksVni_IsNotHandedToTheNextNetwork()
    {
        await CreateNetworkAsync("a", "10.77.1.0/24");
        var b = await CreateNetworkAsync("b", "10.77.2.0/24");
        using (var del = await _server.Client.DeleteAsync("/api/v1/networks/b"))
            Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);

        var c = await CreateNetworkAsync("c", "10.77.3.0/24");

        Assert.True(c.Vni > b.Vni, $"{c.Vni} reuses {b.Vni}");
    }

    [Fact]
    public async Task Register_RecordsTheUnderlayAddress_AndNodesWithoutOneHaveVxlanOff()
    {
        await AgentAsync("n1", "198.51.100.66");
        await AgentAsync("n2");

        var nodes = (await _server.Client.GetFromJsonAsync<List<Node>>("/api/v1/nodes", Problems.Json))!;

        Assert.Equal("198.51.100.66", nodes.Single(n => n.Name == "n1").VxlanAddress);
        Assert.Null(nodes.Single(n => n.Name == "n2").VxlanAddress);
    }

    [Theory]
    [InlineData("not-an-address", "not an IPv4 address")]
    [InlineData("fd00::1", "not an IPv4 address")]
    [InlineData("10.1", "not an IPv4 address")]
    [InlineData("239.1.1.1", "not a unicast address")]
    [InlineData("0.0.0.0", "not a unicast address")]
    public async Task Register_WithABadUnderlayAddress_IsRefusedNamingIt(string address, string expected)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => AgentAsync("bad1", address));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(address, e.Status.Detail, StringComparison.Ordinal);
        Assert.Contains(expected, e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NetworkOnTwoVxlanNodes_NamesEachNodeAsTheOthersPeer_AndAVxlanLessNodeAsNobodys()
    {
        var n1 = await AgentAsync("n1", "198.51.100.66");
        var n2 = await AgentAsync("n2", "198.51.100.67");
        var n3 = await AgentAsync("n3");
        var lan = await CreateNetworkAsync("lan", "10.77.1.0/24");
        await CreateNetworkAsync("solo", "10.77.2.0/24");
        await CreateOnAsync("a", "lan", "n1");
        await CreateOnAsync("b", "lan", "n2");
        await CreateOnAsync("c", "lan", "n3");
        await CreateOnAsync("s", "solo", "n1");

        var d1 = await DesiredAsync(n1);
        var d2 = await DesiredAsync(n2);
        var d3 = await DesiredAsync(n3);

        var lan1 = d1.Networks.Single(n => n.Name == "lan");
        Assert.Equal((uint)lan.Vni, lan1.Vni);
        Assert.Equal(["198.51.100.67"], lan1.VxlanPeers);
        Assert.Equal(["198.51.100.66"], d2.Networks.Single(n => n.Name == "lan").VxlanPeers);
        // n3 has VXLAN off: it gets no peers, and the others do not send to it.
        Assert.Empty(d3.Networks.Single(n => n.Name == "lan").VxlanPeers);
        // A network on one node only has no peers.
        Assert.Empty(d1.Networks.Single(n => n.Name == "solo").VxlanPeers);
        // Every node still knows every host of the network (DHCP lists and names span the nodes), and where the
        // VXLAN-reachable ones are.
        Assert.Equal(["a", "b", "c"], lan1.Hosts.Select(h => h.Name));
        Assert.Equal(["", "198.51.100.67", ""], lan1.Hosts.Select(h => h.VxlanPeer));
        Assert.All(d3.Networks.Single(n => n.Name == "lan").Hosts, h => Assert.Equal("", h.VxlanPeer));
    }

    [Fact]
    public async Task DeletingTheLastGuestOnANode_RemovesThatNodeFromItsPeersList()
    {
        var n1 = await AgentAsync("n1", "198.51.100.66");
        await AgentAsync("n2", "198.51.100.67");
        await CreateNetworkAsync("lan", "10.77.1.0/24");
        await CreateOnAsync("a", "lan", "n1");
        await CreateOnAsync("b", "lan", "n2");
        Assert.Single((await DesiredAsync(n1)).Networks.Single().VxlanPeers);

        using (var del = await _server.Client.DeleteAsync("/api/v1/instances/b"))
            await WaitAsync((await del.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        Assert.Empty((await DesiredAsync(n1)).Networks.Single().VxlanPeers);
    }
}
