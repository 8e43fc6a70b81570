using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Networking;

public sealed class PortForwardEndpointsTests : ServerWithNode
{
    [Fact]
    public async Task Add_ToAVmOnANetwork_ReturnsTheForward_AndTheNodeIsToldToDnat()
    {
        await NetworkAndVmAsync("a");

        var forward = await AddAsync("a", new PortForwardsPost { Port = 22, PublicPort = 2222 });

        Assert.Equal(("a", "tcp", 2222, 22, "10.42.0.2", "lan"), (forward.Instance, forward.Protocol, forward.PublicPort, forward.Port, forward.Address, forward.Network));
        var desired = await ActivatorUtilities.CreateInstance<AgentControlService>(Server.App.Services).DesiredAsync(Agent.NodeId, CancellationToken.None);
        var rule = Assert.Single(Assert.Single(desired.Networks).Forwards);
        Assert.Equal(("tcp", 2222, "10.42.0.2", 22), (rule.Protocol, rule.PublicPort, rule.Address, rule.Port));
        Assert.Equal([2222], (await Server.Client.GetFromJsonAsync<List<PortForward>>("/api/v1/port-forwards", Problems.Json))!.Select(f => f.PublicPort));
        Assert.Equal([2222], (await Server.Client.GetFromJsonAsync<List<PortForward>>("/api/v1/instances/a/port-forwards", Problems.Json))!.Select(f => f.PublicPort));
    }

    [Fact]
    public async Task Add_WithoutPublicPort_GetsTheLowestFreePortOfTheRange_PerProtocol()
    {
        await NetworkAndVmAsync("a");

        var first = await AddAsync("a", new PortForwardsPost { Port = 80 });
        var second = await AddAsync("a", new PortForwardsPost { Port = 443 });
        var udp = await AddAsync("a", new PortForwardsPost { Port = 53, Protocol = "udp" });

        Assert.Equal((2000, 2001, 2000), (first.PublicPort, second.PublicPort, udp.PublicPort));
    }

    [Fact]
    public async Task Add_ThePortTakenAlready_Returns409_AndKeepsTheFirst()
    {
        await NetworkAndVmAsync("a");
        await WaitAsync(await CreateInstanceAsync("b", "lan"));
        await AddAsync("a", new PortForwardsPost { Port = 22, PublicPort = 2222 });

        var problem = await (await PostAsync("b", new PortForwardsPost { Port = 22, PublicPort = 2222 })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);

        Assert.Contains("2222/tcp is already forwarded", problem.Detail, StringComparison.Ordinal);
        Assert.Equal(["a"], (await Server.Client.GetFromJsonAsync<List<PortForward>>("/api/v1/port-forwards", Problems.Json))!.Select(f => f.Instance));
    }

    public static TheoryData<int?, int?, string?, string, string> BadBodies => new()
    {
        { null, 2222, null, "port", "required" },
        { 0, 2222, null, "port", "between 1 and 65535" },
        { 70000, 2222, null, "port", "between 1 and 65535" },
        { 22, 80, null, "publicPort", "outside the forward range 2000-9999" },
        { 22, 7400, null, "publicPort", "used by Kumo itself" },
        { 22, 2222, "sctp", "protocol", "use tcp or udp" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task Add_WithBadInput_Returns400NamingTheField_AndAddsNothing(int? port, int? publicPort, string? protocol, string field, string expected)
    {
        await NetworkAndVmAsync("a");

        var problem = await (await PostAsync("a", new PortForwardsPost { Port = port, PublicPort = publicPort, Protocol = protocol }))
            .AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal([field], problem.Errors!.Keys);
        Assert.Contains(expected, problem.Errors[field][0], StringComparison.Ordinal);
        Assert.Equal(0L, await CountAsync());
    }

    [Fact]
    public async Task Add_ToAVmWithoutATenantNetwork_Returns409SayingHowToFixIt()
    {
        using var created = await Server.CreateAsync(new InstancesPost { Name = "plain", Memory = "64M", Stopped = true });
        await WaitAsync((await created.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        var problem = await (await PostAsync("plain", new PortForwardsPost { Port = 22 })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState);

        Assert.Contains("--network", problem.Detail, StringComparison.Ordinal);
        Assert.Equal(0L, await CountAsync());
    }

    [Fact]
    public async Task Add_ToAnUnknownVm_Returns404()
    {
        await (await PostAsync("nope", new PortForwardsPost { Port = 22 })).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task Remove_StopsTheForward_AndAnUnknownOneIs404()
    {
        await NetworkAndVmAsync("a");
        await AddAsync("a", new PortForwardsPost { Port = 22, PublicPort = 2222 });

        using (var removed = await Server.Client.DeleteAsync("/api/v1/instances/a/port-forwards/2222"))
            Assert.Equal(HttpStatusCode.NoContent, removed.StatusCode);

        Assert.Equal(0L, await CountAsync());
        await (await Server.Client.DeleteAsync("/api/v1/instances/a/port-forwards/2222")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task DeletingTheVm_RemovesItsForwards_AndFreesThePort()
    {
        await NetworkAndVmAsync("a");
        await AddAsync("a", new PortForwardsPost { Port = 22, PublicPort = 2222 });

        using (var deleted = await Server.Client.DeleteAsync("/api/v1/instances/a"))
            await WaitAsync((await deleted.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        Assert.Equal(0L, await CountAsync());
        await WaitAsync(await CreateInstanceAsync("b", "lan"));
        Assert.Equal(2222, (await AddAsync("b", new PortForwardsPost { Port = 22, PublicPort = 2222 })).PublicPort);
    }

    private async Task NetworkAndVmAsync(string vm)
    {
        using (var network = await Server.Client.PostAsync("/api/v1/networks", JsonContent.Create(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" }, options: Problems.Json)))
            network.EnsureSuccessStatusCode();
        await WaitAsync(await CreateInstanceAsync(vm, "lan"));
    }

    private Task<HttpResponseMessage> PostAsync(string vm, PortForwardsPost body) =>
        Server.Client.PostAsync($"/api/v1/instances/{vm}/port-forwards", JsonContent.Create(body, options: Problems.Json));

    private async Task<PortForward> AddAsync(string vm, PortForwardsPost body)
    {
        using var response = await PostAsync(vm, body);
        Assert.True(response.StatusCode == HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
        return (await response.Content.ReadFromJsonAsync<PortForward>(Problems.Json))!;
    }

    private Task<long> CountAsync() =>
        Server.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM port_forwards"), CancellationToken.None);
}
