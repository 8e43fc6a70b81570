using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Clusters;

/// <summary>Where a cluster's members land when there is more than one node.</summary>
public sealed class ClusterPlacementTests : ClusterTestBase
{
    [Fact]
    public async Task WithVxlanOnEveryNode_ComputeNodesSpreadOverTheNodes()
    {
        await using var b = await FakeAgent.StartAsync(Server, "node-b", cpus: 64, memoryBytes: 64 * ByteSize.GiB, vxlanAddress: "192.0.2.12");
        await using var c = await FakeAgent.StartAsync(Server, "node-c", cpus: 64, memoryBytes: 64 * ByteSize.GiB, vxlanAddress: "192.0.2.13");
        await DrainAsync("node-a");

        await WaitAsync(await CreateAsync(new ClustersPost { Name = "wide", Nodes = 4, NodeMemory = "64M" }));

        var members = (await GetAsync("wide")).Members;
        Assert.Equal(["node-b", "node-c"], members.Select(m => m.Node!).Distinct().Order());
    }

    [Fact]
    public async Task WithoutVxlan_EveryMemberStaysOnTheFrontendsNode()
    {
        await using var b = await FakeAgent.StartAsync(Server, "node-b", cpus: 64, memoryBytes: 64 * ByteSize.GiB);

        await WaitAsync(await CreateAsync(new ClustersPost { Name = "narrow", Nodes = 4, NodeMemory = "64M" }));

        var members = (await GetAsync("narrow")).Members;
        Assert.Single(members.Select(m => m.Node).Distinct());
    }

    [Fact]
    public async Task AReservedCluster_StartsOnTheNodeItsWindowWasAdmittedOn()
    {
        await using var b = await FakeAgent.StartAsync(Server, "node-b", cpus: 64, memoryBytes: 64 * ByteSize.GiB, vxlanAddress: "192.0.2.12");
        var now = DateTimeOffset.UtcNow;
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "booked", Nodes = 3, NodeMemory = "64M", Start = now.AddSeconds(2), End = now.AddMinutes(10) }));
        var node = (await Server.Client.GetFromJsonAsync<Reservation>("/api/v1/reservations/booked", Kumo.Server.Api.Problems.Json))!.Node;

        var cluster = await PollAsync("booked", c => c.State == ClusterStates.Ready);

        Assert.All(cluster.Members, m => Assert.Equal(node, m.Node));
    }

    private async Task DrainAsync(string node)
    {
        using var r = await Server.Client.PostAsync($"/api/v1/nodes/{node}/drain", null);
        r.EnsureSuccessStatusCode();
    }
}
