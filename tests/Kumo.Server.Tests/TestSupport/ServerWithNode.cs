using System.Net;
using System.Net.Http.Json;
using Kumo.Server.Api;
using Kumo.Core;

namespace Kumo.Server.Tests.TestSupport;

/// <summary>A real kumod with one roomy node driven by a <see cref="FakeAgent"/>, started and stopped per test.</summary>
public abstract class ServerWithNode : IAsyncLifetime
{
    protected TestServer Server { get; private set; } = null!;
    protected FakeAgent Agent { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await TestServer.StartAsync();
        Agent = await FakeAgent.StartAsync(Server, "node-a", cpus: 64, memoryBytes: 64 * ByteSize.GiB);
    }

    public async Task DisposeAsync()
    {
        await Agent.DisposeAsync();
        await Server.DisposeAsync();
    }

    /// <summary>Creates a stopped VM with a NIC on <paramref name="network"/>; returns its create operation.</summary>
    protected async Task<Operation> CreateInstanceAsync(string name, string network)
    {
        using var response = await Server.CreateAsync(new InstancesPost { Name = name, Memory = "64M", Network = network, Stopped = true });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
    }

    /// <summary>Polls an operation until it ends and asserts it succeeded.</summary>
    protected async Task<Operation> WaitAsync(Operation op)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (!OperationStatuses.IsFinal(op.Status) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            op = (await Server.Client.GetFromJsonAsync<Operation>($"/api/v1/operations/{op.Id}", Problems.Json))!;
        }
        Assert.Equal(OperationStatuses.Succeeded, op.Status);
        return op;
    }
}
