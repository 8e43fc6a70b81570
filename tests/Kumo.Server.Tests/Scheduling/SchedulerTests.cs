using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Scheduling;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Scheduling;

public sealed class SchedulerTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    [Fact]
    public async Task Spread_FourInstancesOnTwoEqualNodes_AlternatesTwoAndTwo()
    {
        await using var plane = await ControlPlane.StartAsync();
        await plane.AddNodeAsync("node-b");
        await plane.AddNodeAsync("node-a");

        var placed = new List<string>();
        for (var i = 0; i < 4; i++) placed.Add(await plane.PlaceAsync($"vm-{i}"));

        Assert.Equal(["node-a", "node-b", "node-a", "node-b"], placed);
    }

    [Fact]
    public async Task Pack_FillsOneNodeBeforeTheNext()
    {
        await using var plane = await ControlPlane.StartAsync(new SchedulerOptions { Weigher = "pack" });
        await plane.AddNodeAsync("node-a", memory: "1G");
        await plane.AddNodeAsync("node-b", memory: "1G");

        var placed = new List<string>();
        for (var i = 0; i < 6; i++) placed.Add(await plane.PlaceAsync($"vm-{i}"));

        Assert.Equal(["node-a", "node-a", "node-a", "node-a", "node-b", "node-b"], placed);
    }

    [Fact]
    public async Task Place_WithPinnedNode_UsesItOverTheWeighersChoice()
    {
        await using var plane = await ControlPlane.StartAsync();
        await plane.AddNodeAsync("node-a", memory: "8G");
        await plane.AddNodeAsync("node-b", memory: "1G");

        Assert.Equal("node-b", await plane.PlaceAsync("pinned", node: "node-b"));
        Assert.Equal("node-a", await plane.PlaceAsync("free"));
    }

    [Fact]
    public async Task Place_WithPinnedNodeWithoutRoom_FailsRatherThanUsingAnother()
    {
        await using var plane = await ControlPlane.StartAsync();
        await plane.AddNodeAsync("node-a", memory: "8G");
        await plane.AddNodeAsync("node-b", memory: "256M");
        await plane.PlaceAsync("first", node: "node-b");

        var e = await Assert.ThrowsAsync<ProblemException>(() => plane.PlaceAsync("second", node: "node-b"));

        Assert.Equal(ProblemTypes.NoCapacity, e.Type);
        Assert.Contains("memory", e.Rejections!["node-b"]);
        Assert.Equal("not the requested node 'node-b'", e.Rejections["node-a"]);
    }

    [Fact]
    public async Task Place_SkipsDrainingNode()
    {
        await using var plane = await ControlPlane.StartAsync();
        await plane.AddNodeAsync("node-a");
        await plane.AddNodeAsync("node-b");
        await plane.Nodes.SetDrainingAsync("node-a", true, None);

        for (var i = 0; i < 3; i++) Assert.Equal("node-b", await plane.PlaceAsync($"vm-{i}"));

        await plane.Nodes.SetDrainingAsync("node-a", false, None);
        Assert.Equal("node-a", await plane.PlaceAsync("after-undrain"));
    }

    [Fact]
    public async Task Place_SkipsDownNode()
    {
        var clock = new ManualTimeProvider();
        await using var plane = await ControlPlane.StartAsync(time: clock);
        await plane.AddNodeAsync("node-a");
        var b = await plane.AddNodeAsync("node-b");
        clock.Advance(plane.Nodes.Health.DownAfter + TimeSpan.FromSeconds(1));
        await plane.Nodes.HeartbeatAsync(b, None);
        Assert.Equal(1, await plane.Nodes.CheckLivenessAsync(None));

        for (var i = 0; i < 3; i++) Assert.Equal("node-b", await plane.PlaceAsync($"vm-{i}"));
    }

    [Fact]
    public async Task Place_SkipsNodeWithoutRoomEvenWhenTheWeigherPrefersIt()
    {
        await using var plane = await ControlPlane.StartAsync(new SchedulerOptions { Weigher = "pack" });
        await plane.AddNodeAsync("node-a", memory: "2G");
        await plane.AddNodeAsync("node-b", memory: "2G");
        await plane.PlaceAsync("big", memory: "1536M", node: "node-a");

        Assert.Equal("node-a", await plane.PlaceAsync("fits", memory: "512M"));
        Assert.Equal("node-b", await plane.PlaceAsync("after-a-is-full", memory: "16M"));
    }

    [Fact]
    public async Task Place_WhenNothingFits_ReturnsNoCapacityWithEachNodesReason()
    {
        var clock = new ManualTimeProvider();
        await using var plane = await ControlPlane.StartAsync(time: clock);
        var zoneB = new Dictionary<string, string> { ["zone"] = "b" };
        var small = await plane.AddNodeAsync("small", memory: "1G", labels: zoneB);
        await plane.AddNodeAsync("down", memory: "64G", labels: zoneB);
        clock.Advance(plane.Nodes.Health.DownAfter + TimeSpan.FromSeconds(1));
        await plane.Nodes.HeartbeatAsync(small, None);
        await plane.Nodes.CheckLivenessAsync(None);
        await plane.AddNodeAsync("draining", memory: "64G", labels: zoneB);
        await plane.Nodes.SetDrainingAsync("draining", true, None);
        await plane.AddNodeAsync("few-cpus", cpus: 1, memory: "64G", labels: zoneB);
        await plane.AddNodeAsync("zone-a", memory: "64G", labels: new Dictionary<string, string> { ["zone"] = "a" });

        var e = await Assert.ThrowsAsync<ProblemException>(() => plane.PlaceAsync("homeless", memory: "2G", cpus: 8, nodeSelector: zoneB));

        Assert.Equal(409, e.Status);
        Assert.Equal(ProblemTypes.NoCapacity, e.Type);
        Assert.Equal(new Dictionary<string, string>
        {
            ["down"] = "node is down (no heartbeat)",
            ["draining"] = "node is draining",
            ["few-cpus"] = "needs 8 vCPU, 4 of 4 free (cpu overcommit 4)",
            ["small"] = "needs 2G memory, 1G of 1G free",
            ["zone-a"] = "label zone=b does not match",
        }, e.Rejections);
        Assert.Contains("small: needs 2G memory", e.Detail);
        Assert.Equal(0, await plane.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM instances"), None));
    }

    [Fact]
    public async Task Place_WithNoNodes_SaysNoNodeIsRegistered()
    {
        await using var plane = await ControlPlane.StartAsync();

        var e = await Assert.ThrowsAsync<ProblemException>(() => plane.PlaceAsync("alone"));

        Assert.Equal(ProblemTypes.NoCapacity, e.Type);
        Assert.Equal("no node is registered; start kumo-agent", e.Rejections!["(none)"]);
    }

    [Fact]
    public async Task Place_WithNodeSelector_ConsidersOnlyNodesCarryingAllLabels()
    {
        await using var plane = await ControlPlane.StartAsync();
        await plane.AddNodeAsync("node-a", memory: "8G", labels: new Dictionary<string, string> { ["zone"] = "a" });
        await plane.AddNodeAsync("node-b", memory: "1G", labels: new Dictionary<string, string> { ["zone"] = "b", ["disk"] = "ssd" });

        Assert.Equal("node-b", await plane.PlaceAsync("in-b", nodeSelector: new Dictionary<string, string> { ["zone"] = "b" }));
        Assert.Equal("node-b", await plane.PlaceAsync("ssd", nodeSelector: new Dictionary<string, string> { ["disk"] = "ssd" }));
        var e = await Assert.ThrowsAsync<ProblemException>(() =>
            plane.PlaceAsync("nowhere", nodeSelector: new Dictionary<string, string> { ["zone"] = "a", ["disk"] = "ssd" }));
        Assert.Equal(ProblemTypes.NoCapacity, e.Type);
        Assert.Equal("label disk=ssd does not match", e.Rejections!["node-a"]);
        Assert.Equal("label zone=a does not match", e.Rejections["node-b"]);
    }

    [Fact]
    public async Task Place_RespectsCpuOvercommitRatio()
    {
        await using var plane = await ControlPlane.StartAsync(new SchedulerOptions { CpuOvercommit = 2.0 });
        await plane.AddNodeAsync("node-a", cpus: 2, memory: "64G");

        for (var i = 0; i < 4; i++) await plane.PlaceAsync($"vm-{i}", cpus: 1);
        var e = await Assert.ThrowsAsync<ProblemException>(() => plane.PlaceAsync("fifth", cpus: 1));

        Assert.Equal(ProblemTypes.NoCapacity, e.Type);
        Assert.Equal("needs 1 vCPU, 0 of 4 free (cpu overcommit 2)", e.Rejections!["node-a"]);
    }

    [Fact]
    public async Task Place_RespectsMemoryOvercommitRatio()
    {
        await using var plane = await ControlPlane.StartAsync(new SchedulerOptions { MemoryOvercommit = 1.5 });
        await plane.AddNodeAsync("node-a", cpus: 64, memory: "1G");

        for (var i = 0; i < 6; i++) await plane.PlaceAsync($"vm-{i}", memory: "256M");
        var e = await Assert.ThrowsAsync<ProblemException>(() => plane.PlaceAsync("seventh", memory: "256M"));

        Assert.Equal(ProblemTypes.NoCapacity, e.Type);
        Assert.Equal("needs 256M memory, 0 of 1536M free", e.Rejections!["node-a"]);
    }

    [Fact]
    public async Task Place_With50ConcurrentCreatesAndRoomForTen_PlacesExactlyTenWithinCapacity()
    {
        await using var plane = await ControlPlane.StartAsync();
        await plane.AddNodeAsync("node-a", cpus: 8, memory: "1280M");
        await plane.AddNodeAsync("node-b", cpus: 8, memory: "1280M");

        var creates = Enumerable.Range(0, 50)
            .Select(i => Task.Run(() => plane.Instances.CreateAsync(ControlPlane.Admin, ControlPlane.Project, new InstancesPost { Name = $"vm-{i}", Memory = "256M" }, None)))
            .ToList();
        var outcomes = await Task.WhenAll(creates.Select(async t =>
        {
            try
            {
                await t;
                return "placed";
            }
            catch (ProblemException e)
            {
                return e.Type;
            }
        }));

        Assert.Equal(10, outcomes.Count(o => o == "placed"));
        Assert.Equal(40, outcomes.Count(o => o == ProblemTypes.NoCapacity));
        var perNode = await plane.Database.ReadAsync(c => c.Query<(string Name, long Capacity, long Placed, long Count)>(
            """
            SELECT n.name, n.memory_bytes, COALESCE(SUM(i.memory_bytes), 0), COUNT(i.id)
            FROM nodes n LEFT JOIN instances i ON i.node_id = n.id GROUP BY n.id ORDER BY n.name
            """).ToList(), None);
        Assert.All(perNode, n => Assert.InRange(n.Placed, 0, n.Capacity));
        Assert.Equal(10, perNode.Sum(n => n.Count));
        Assert.Equal([5L, 5L], perNode.Select(n => n.Count));
    }
}
