using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Debugging;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Debugging;

/// <summary>The gdb stub port pool against a node agent that confirms stubs at once (the real stub is in the integration tests).</summary>
public sealed class DebugPortTests : IAsyncLifetime
{
    /// <summary>A pool of one port, so a second VM finds it exhausted.</summary>
    private const int Port = 21377;

    private TestServer _server = null!;
    private FakeAgent _agent = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync(b => b.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(
            new DebugPortOptions { First = Port, Last = Port, Bind = "127.0.0.1" })));
        _agent = await FakeAgent.StartAsync(_server, "node-a");
    }

    public async Task DisposeAsync()
    {
        await _agent.DisposeAsync();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Enable_GivesAPortFromThePool_ThePoolRunsOut_StopFreesThePortForTheNextVm()
    {
        await RunningAsync("dbg1");
        await RunningAsync("dbg2");

        using var first = await _server.Client.PostAsync("/api/v1/instances/dbg1/debug", null);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var stub = (await first.Content.ReadFromJsonAsync<DebugStub>(Problems.Json))!;
        Assert.True(stub.Active);
        Assert.Equal($"target remote 127.0.0.1:{Port}", stub.Target);
        // Asking again keeps the same port.
        using (var again = await _server.Client.PostAsync("/api/v1/instances/dbg1/debug", null))
            Assert.Equal(Port, (await again.Content.ReadFromJsonAsync<DebugStub>(Problems.Json))!.Port);

        using (var exhausted = await _server.Client.PostAsync("/api/v1/instances/dbg2/debug", null))
            await exhausted.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.DebugPortsExhausted);

        using (var stop = await _server.Client.PostAsync("/api/v1/instances/dbg1/stop", null))
            Assert.True(stop.IsSuccessStatusCode);
        Assert.False((await _server.Client.GetFromJsonAsync<DebugStub>("/api/v1/instances/dbg1/debug", Problems.Json))!.Enabled);
        using var second = await _server.Client.PostAsync("/api/v1/instances/dbg2/debug", null);
        Assert.Equal(Port, (await second.Content.ReadFromJsonAsync<DebugStub>(Problems.Json))!.Port);

        // Off frees it as well, and the node is asked for no stub any more.
        using (var off = await _server.Client.DeleteAsync("/api/v1/instances/dbg2/debug"))
            Assert.Equal(HttpStatusCode.OK, off.StatusCode);
        Assert.Equal(0, await PortsInUseAsync());
    }

    [Fact]
    public async Task OtherUsers_GetNotFound_AndNoPortIsAllocatedForThem()
    {
        await RunningAsync("dbg3");
        var bob = await _server.AddUserAsync("bob", "bob-password");
        using var asBob = _server.ClientFor(bob);

        foreach (var method in new[] { HttpMethod.Get, HttpMethod.Post, HttpMethod.Delete })
        {
            using var r = await asBob.SendAsync(new HttpRequestMessage(method, "/api/v1/instances/dbg3/debug?project=admin"));
            await r.AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
        }
        Assert.Equal(0, await PortsInUseAsync());
    }

    [Fact]
    public async Task Enable_OnAStoppedVm_IsInvalidState()
    {
        using (var c = await _server.CreateAsync(new InstancesPost { Name = "cold", Memory = "128M", Stopped = true }))
            Assert.Equal(HttpStatusCode.Accepted, c.StatusCode);
        using var r = await _server.Client.PostAsync("/api/v1/instances/cold/debug", null);
        await r.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState);
        Assert.Equal(0, await PortsInUseAsync());
    }

    [Fact]
    public async Task PortsOfVmsNotMeantToRun_AreFreedWhenKumodStarts()
    {
        await RunningAsync("dbg4");
        using (var on = await _server.Client.PostAsync("/api/v1/instances/dbg4/debug", null))
            Assert.Equal(HttpStatusCode.OK, on.StatusCode);
        await _agent.DisposeAsync();
        // As if kumod had died between writes: a row whose VM is stopped (the stop itself always frees it).
        await _server.Database.WriteAsync(ctx => ctx.Connection.Execute("UPDATE instances SET desired_power = 'stopped' WHERE name = 'dbg4'",
            transaction: ctx.Transaction), CancellationToken.None);
        _server = await _server.RestartAsync();
        _agent = await FakeAgent.StartAsync(_server, "node-a");

        Assert.Equal(0, await PortsInUseAsync());
    }

    private Task<long> PortsInUseAsync() =>
        _server.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM debug_ports"), CancellationToken.None);

    private async Task RunningAsync(string name)
    {
        using (var r = await _server.CreateAsync(new InstancesPost { Name = name, Memory = "128M" }))
            Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while ((await _server.Client.GetFromJsonAsync<Instance>($"/api/v1/instances/{name}", Problems.Json))!.State != InstanceStates.Running)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{name} never became running");
            await Task.Delay(50);
        }
    }
}
