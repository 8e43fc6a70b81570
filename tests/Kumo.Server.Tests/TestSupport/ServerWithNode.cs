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
}
