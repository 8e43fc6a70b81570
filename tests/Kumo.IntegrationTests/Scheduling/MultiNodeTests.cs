using System.Net;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Scheduling;

/// <summary>kumod without a local agent plus two kumo-agent processes on this machine, each with its own state dir.</summary>
public sealed class TwoNodes : IAsyncLifetime
{
    public KumoEnvironment Env { get; private set; } = null!;
    public DaemonProcess Agent1 { get; set; } = null!;
    public DaemonProcess Agent2 { get; set; } = null!;

    public async Task InitializeAsync()
    {
        Env = await KumoEnvironment.StartAsync(allInOne: false, "--down-after-seconds", "3", "--heartbeat-seconds", "0.5");
        Agent1 = await Env.StartAgentAsync("n1", cpus: 2, memory: "2G");
        Agent2 = await Env.StartAgentAsync("n2", cpus: 2, memory: "2G");
    }

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

[Trait("Category", "Slow")]
public sealed class MultiNodeTests(TwoNodes fixture) : IClassFixture<TwoNodes>, IAsyncLifetime
{
    private KumoEnvironment Env => fixture.Env;

    /// <summary>
    /// A loaded machine can delay heartbeats past the short --down-after-seconds, and a test may have restarted an
    /// agent: every test starts only when both nodes are ready.
    /// </summary>
    public async Task InitializeAsync() => await ApiClient.EventuallyAsync(() => Env.Api.NodesAsync(),
        nodes => nodes.Count(n => n.State == NodeStates.Ready) == 2, TimeSpan.FromSeconds(60), "both nodes ready");

    /// <summary>Every test starts from two empty nodes.</summary>
    public async Task DisposeAsync()
    {
        foreach (var i in await Env.Api.ListAsync()) await Env.DoAsync(i.Name, "force-delete");
        foreach (var n in new[] { "n1", "n2" }) await Env.Api.Http.PostAsync($"/api/v1/nodes/{n}/undrain", null);
    }

    private async Task<string?> NodeOf(string name) => (await Env.Api.GetAsync(name))?.Node;

    [Fact]
    public async Task Spread_FourCreatesOnTwoEmptyNodes_LandTwoAndTwoInAFixedOrder()
    {
        foreach (var name in new[] { "s1", "s2", "s3", "s4" })
            Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync(name, new { stopped = true })).Status);
        var placed = new List<string?> { await NodeOf("s1"), await NodeOf("s2"), await NodeOf("s3"), await NodeOf("s4") };
        Assert.Equal(new List<string?> { "n1", "n2", "n1", "n2" }, placed);
        // Each agent made the disks of its own instances in its own state dir.
        foreach (var i in await Env.Api.ListAsync())
            Assert.True(File.Exists(Path.Combine(Env.AgentStateDir(i.Node!), "instances", i.Id, "disk.qcow2")), i.Name);
    }

    [Fact]
    public async Task PinnedNode_IsHonoured()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("p1", new { stopped = true, node = "n2" })).Status);
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("p2", new { stopped = true, node = "n2" })).Status);
        Assert.Equal("n2", await NodeOf("p1"));
        Assert.Equal("n2", await NodeOf("p2"));
    }

    [Fact]
    public async Task DrainedNode_GetsNoNewPlacements_UntilUndrained()
    {
        (await Env.Api.Http.PostAsync("/api/v1/nodes/n1/drain", null)).EnsureSuccessStatusCode();
        Assert.Equal(NodeStates.Draining, (await Env.Api.NodesAsync()).Single(n => n.Name == "n1").State);
        await Env.CreateAsync("d1", new { stopped = true });
        await Env.CreateAsync("d2", new { stopped = true });
        Assert.Equal("n2", await NodeOf("d1"));
        Assert.Equal("n2", await NodeOf("d2"));
        (await Env.Api.Http.PostAsync("/api/v1/nodes/n1/undrain", null)).EnsureSuccessStatusCode();
        await Env.CreateAsync("d3", new { stopped = true });
        Assert.Equal("n1", await NodeOf("d3"));
    }

    [Fact]
    public async Task NodeWithoutRoom_IsSkipped()
    {
        await Env.CreateAsync("big1", new { stopped = true, memory = "1536M", node = "n1" });
        await Env.CreateAsync("big2", new { stopped = true, memory = "1G" });
        Assert.Equal("n2", await NodeOf("big2"));
    }

    [Fact]
    public async Task WhenNoNodeFits_TheErrorSaysWhyForEachNode()
    {
        var (status, _, problem) = await Env.Api.CreateAsync(new { name = "huge", image = "tiny", memory = "3G" });
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Equal(ProblemTypes.NoCapacity, problem!.Type);
        Assert.Contains("memory", problem.Rejections!["n1"]);
        Assert.Contains("memory", problem.Rejections!["n2"]);
        Assert.Null(await Env.Api.GetAsync("huge"));
    }

    [Fact]
    public async Task RemoveNode_WithInstances_IsRefusedWithoutForce()
    {
        await Env.CreateAsync("r1", new { stopped = true, node = "n2" });
        using var r = await Env.Api.Http.DeleteAsync("/api/v1/nodes/n2");
        Assert.Equal(HttpStatusCode.Conflict, r.StatusCode);
        Assert.Contains(ProblemTypes.NodeBusy, await r.Content.ReadAsStringAsync());
        Assert.Equal(2, (await Env.Api.NodesAsync()).Count);
    }

    [Fact]
    public async Task AgentKilledWhileGuestsRun_RestartedAgentAdoptsOnlyItsOwnGuests()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("k1", new { node = "n1" })).Status);
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("k2", new { node = "n2" })).Status);
        var before = Env.QemuPids().Order().ToList();
        Assert.Equal(2, before.Count);

        fixture.Agent2.Crash();
        // Guests are independent of their agent.
        Assert.Equal(before, Env.QemuPids().Order().ToList());
        fixture.Agent2 = await Env.StartAgentAsync("n2", cpus: 2, memory: "2G");
        var k2 = await ApiClient.EventuallyAsync(() => Env.Api.GetAsync("k2"), i => i?.State == InstanceStates.Running, TimeSpan.FromSeconds(30), "k2 running");
        Assert.Equal("guest ready", k2!.StatusMessage);
        Assert.Equal(before, Env.QemuPids().Order().ToList());
        Assert.Equal(InstanceStates.Running, (await Env.Api.GetAsync("k1"))!.State);
    }

    [Fact]
    public async Task NodeMissingHeartbeats_GoesDown_InstancesLost_ThenReconciledWithoutDuplicates()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("h1", new { node = "n1" })).Status);
        var pids = Env.QemuPids();
        fixture.Agent1.Crash();
        await ApiClient.EventuallyAsync(() => Env.Api.NodesAsync(), ns => ns.Single(n => n.Name == "n1").State == NodeStates.Down,
            TimeSpan.FromSeconds(30), "n1 down");
        Assert.Equal(InstanceStates.Lost, (await Env.Api.GetAsync("h1"))!.State);
        // Nothing can be placed on a down node.
        var (status, _, problem) = await Env.Api.CreateAsync(new { name = "h2", image = "tiny", memory = "128M", node = "n1", stopped = true });
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("down", problem!.Rejections!["n1"]);

        fixture.Agent1 = await Env.StartAgentAsync("n1", cpus: 2, memory: "2G");
        await ApiClient.EventuallyAsync(() => Env.Api.GetAsync("h1"), i => i?.State == InstanceStates.Running, TimeSpan.FromSeconds(30), "h1 running again");
        Assert.Equal(pids, Env.QemuPids());
    }
}
