using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Api;

public sealed class NodeEndpointsTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        await _server.AddNodeAsync("node-a");
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Drain_StopsPlacementUntilUndrain()
    {
        var drained = await _server.Client.PostAsync("/api/v1/nodes/node-a/drain", null);
        Assert.Equal(HttpStatusCode.OK, drained.StatusCode);
        Assert.Equal(NodeStates.Draining, (await drained.Content.ReadFromJsonAsync<Node>(Problems.Json))!.State);

        var refused = await (await _server.CreateAsync(new InstancesPost { Name = "web" })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.NoCapacity);
        Assert.Equal("node is draining", refused.Rejections!["node-a"]);

        var undrained = await _server.Client.PostAsync("/api/v1/nodes/node-a/undrain", null);
        Assert.Equal(HttpStatusCode.OK, undrained.StatusCode);
        Assert.Equal(NodeStates.Ready, (await undrained.Content.ReadFromJsonAsync<Node>(Problems.Json))!.State);
        Assert.Equal(HttpStatusCode.Accepted, (await _server.CreateAsync(new InstancesPost { Name = "web" })).StatusCode);
    }

    [Fact]
    public async Task Drain_UnknownNode_Returns404Problem()
    {
        await (await _server.Client.PostAsync("/api/v1/nodes/node-z/drain", null)).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task Remove_NodeWithInstances_Returns409NodeBusyAndKeepsEverything()
    {
        await _server.CreateAsync(new InstancesPost { Name = "web" });

        var problem = await (await _server.Client.DeleteAsync("/api/v1/nodes/node-a")).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.NodeBusy);

        Assert.Contains("web", problem.Detail);
        Assert.Equal(HttpStatusCode.OK, (await _server.Client.GetAsync("/api/v1/nodes/node-a")).StatusCode);
        Assert.Equal(1, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Remove_NodeWithInstancesAndForce_Returns204AndRemovesTheInstances()
    {
        var create = await _server.CreateAsync(new InstancesPost { Name = "web" });
        var op = (await create.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;

        var response = await _server.Client.DeleteAsync("/api/v1/nodes/node-a?force=true");

        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        await (await _server.Client.GetAsync("/api/v1/nodes/node-a")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        await (await _server.Client.GetAsync("/api/v1/instances/web")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        Assert.Equal(0, await _server.CountInstancesAsync());
        var failed = (await _server.Client.GetFromJsonAsync<Operation>($"/api/v1/operations/{op.Id}", Problems.Json))!;
        Assert.Equal((OperationStatuses.Failed, "its node was removed"), (failed.Status, failed.Error));
    }

    [Fact]
    public async Task Remove_EmptyNode_Returns204()
    {
        Assert.Equal(HttpStatusCode.NoContent, (await _server.Client.DeleteAsync("/api/v1/nodes/node-a")).StatusCode);

        Assert.Empty((await _server.Client.GetFromJsonAsync<List<Node>>("/api/v1/nodes", Problems.Json))!);
    }
}
