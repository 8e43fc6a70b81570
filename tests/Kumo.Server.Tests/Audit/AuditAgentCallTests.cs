using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Kumo.Protocol;
using Kumo.Server.Security;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Audit;

/// <summary>The agent gRPC surface is audited like the REST API, as agent.METHOD.</summary>
public sealed class AuditAgentCallTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private X509Certificate2 _certificate = null!;
    private GrpcChannel _channel = null!;
    private int _baseline;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        // The node's client certificate, issued directly (as for the all-in-one agent): no REST call, no audit entry.
        _certificate = await _server.App.Services.GetRequiredService<NodeCertificates>().IssueLocalAsync("node-a", CancellationToken.None);
        _channel = GrpcChannel.ForAddress(_server.Agent, new GrpcChannelOptions { HttpHandler = TestServer.Trusting(_server.Ca, _certificate), DisposeHttpClient = true });
        _baseline = (await _server.RowsAsync()).Count;
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        _certificate.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task UnaryAndStreamingCalls_AreRecordedAndStillWork_ExceptASuccessfulHeartbeat()
    {
        var agent = new AgentControl.AgentControlClient(_channel);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));

        var registered = await agent.RegisterAsync(new RegisterRequest { NodeName = "node-a", Cpus = 2, MemoryBytes = 1L << 30, Accelerator = "tcg" },
            cancellationToken: cts.Token);
        var beat = await agent.HeartbeatAsync(new HeartbeatRequest { NodeId = registered.NodeId }, cancellationToken: cts.Token);
        using (var watch = agent.WatchDesired(new WatchRequest { NodeId = registered.NodeId }, cancellationToken: cts.Token))
        {
            Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        }

        Assert.False(string.IsNullOrEmpty(registered.NodeId));
        Assert.True(beat.Known);
        var rows = (await _server.RowsAsync()).Skip(_baseline).ToList();
        Assert.Equal(
            [
                ("agent.Register", "/kumo.agent.v1.AgentControl/Register", "allowed", 200L),
                ("agent.WatchDesired", "/kumo.agent.v1.AgentControl/WatchDesired", "stream-started", 200L),
            ],
            rows.Select(r => (r.Action, r.Target, r.Outcome, r.Status)));
        Assert.All(rows, r => Assert.Equal("agent", r.UserName));
    }

    [Fact]
    public async Task KeepaliveCalls_AreNotRecordedWhenTheySucceed_ButAreWhenRefused()
    {
        var agent = new AgentControl.AgentControlClient(_channel);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var registered = await agent.RegisterAsync(new RegisterRequest { NodeName = "node-a", Cpus = 2, MemoryBytes = 1L << 30, Accelerator = "tcg" },
            cancellationToken: cts.Token);
        var afterRegister = (await _server.RowsAsync()).Count;

        // What an agent sends every few seconds for as long as it runs: heartbeats and metrics reports.
        for (var i = 0; i < 5; i++)
        {
            Assert.True((await agent.HeartbeatAsync(new HeartbeatRequest { NodeId = registered.NodeId }, cancellationToken: cts.Token)).Known);
            await agent.ReportMetricsAsync(new MetricsReport { NodeId = registered.NodeId }, cancellationToken: cts.Token);
        }
        var afterKeepalives = (await _server.RowsAsync()).Count;
        // The same calls from someone without a node certificate are refused, and that is recorded.
        using var stranger = GrpcChannel.ForAddress(_server.Agent, new GrpcChannelOptions { HttpHandler = TestServer.Trusting(_server.Ca), DisposeHttpClient = true });
        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            new AgentControl.AgentControlClient(stranger).HeartbeatAsync(new HeartbeatRequest { NodeId = registered.NodeId }, cancellationToken: cts.Token).ResponseAsync);

        Assert.Equal(afterRegister, afterKeepalives);
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
        var row = Assert.Single((await _server.RowsAsync()).Skip(afterKeepalives));
        Assert.Equal(("agent.Heartbeat", "denied", 401L), (row.Action, row.Outcome, row.Status));
    }

    [Fact]
    public async Task UnknownMethod_IsRecordedWithTheHttpEquivalentOfItsGrpcStatus()
    {
        var invoker = _channel.CreateCallInvoker();
        var method = new Method<RegisterRequest, RegisterReply>(MethodType.Unary, "kumo.agent.v1.AgentControl", "Nope",
            Marshallers.Create(r => Google.Protobuf.MessageExtensions.ToByteArray(r), RegisterRequest.Parser.ParseFrom),
            Marshallers.Create(r => Google.Protobuf.MessageExtensions.ToByteArray(r), RegisterReply.Parser.ParseFrom));

        var e = await Assert.ThrowsAsync<RpcException>(() => invoker.AsyncUnaryCall(method, null, new CallOptions(), new RegisterRequest()).ResponseAsync);

        var row = Assert.Single((await _server.RowsAsync()).Skip(_baseline));
        Assert.Equal("/kumo.agent.v1.AgentControl/Nope", row.Target);
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
        // grpc-dotnet's catch-all endpoint carries the service's permission but no method: the target names it.
        Assert.Equal(("agent.control", "error", 501L), (row.Action, row.Outcome, row.Status));
    }
}
