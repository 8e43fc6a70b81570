using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Security;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.TestSupport;

/// <summary>
/// A node agent that speaks the real protocol to kumod's agent endpoint but runs no guests: every desired state is
/// reached at once (running, stopped, gone after a delete, gdb stubs), and heartbeats keep the node up. It speaks over TLS,
/// trusting kumod's CA, with a node certificate issued directly (as for the all-in-one agent).
/// </summary>
public sealed class FakeAgent : IAsyncDisposable
{
    private readonly X509Certificate2 _certificate;
    private readonly GrpcChannel _channel;
    private readonly AgentControl.AgentControlClient _client;
    private readonly CancellationTokenSource _stop = new();
    private Task _loops = Task.CompletedTask;

    private FakeAgent(TestServer server, X509Certificate2 certificate)
    {
        _certificate = certificate;
        _channel = GrpcChannel.ForAddress(server.AgentAddress,
            new GrpcChannelOptions { HttpHandler = TestServer.Trusting(server.Ca, certificate), DisposeHttpClient = true });
        _client = new AgentControl.AgentControlClient(_channel);
    }

    public string NodeId { get; private set; } = "";

    public static async Task<FakeAgent> StartAsync(TestServer server, string nodeName, int cpus = 8, long memoryBytes = 16 * ByteSize.GiB,
        string vxlanAddress = "")
    {
        var certificate = await server.App.Services.GetRequiredService<NodeCertificates>().IssueLocalAsync(nodeName, CancellationToken.None);
        var agent = new FakeAgent(server, certificate);
        var reply = await agent._client.RegisterAsync(new RegisterRequest
        {
            NodeName = nodeName,
            Cpus = cpus,
            MemoryBytes = memoryBytes,
            Accelerator = "kvm",
            AgentVersion = "fake",
            Simulated = true,
            VxlanAddress = vxlanAddress,
        });
        agent.NodeId = reply.NodeId;
        var interval = TimeSpan.FromMilliseconds(reply.HeartbeatIntervalMs);
        agent._loops = Task.WhenAll(agent.HeartbeatAsync(interval, agent._stop.Token), agent.ReconcileAsync(agent._stop.Token));
        return agent;
    }

    private async Task HeartbeatAsync(TimeSpan interval, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
                await _client.HeartbeatAsync(new HeartbeatRequest { NodeId = NodeId }, cancellationToken: ct);
        }
        catch (Exception e) when (ct.IsCancellationRequested && e is OperationCanceledException or RpcException)
        {
        }
    }

    private async Task ReconcileAsync(CancellationToken ct)
    {
        try
        {
            using var watch = _client.WatchDesired(new WatchRequest { NodeId = NodeId }, cancellationToken: ct);
            await foreach (var desired in watch.ResponseStream.ReadAllAsync(ct))
            {
                var report = new StatusReport { NodeId = NodeId, Full = true };
                foreach (var i in desired.Instances)
                {
                    report.Instances.Add(i.Power == PowerStates.Deleted
                        ? new InstanceStatus { Id = i.Id, State = InstanceStates.Stopped, Gone = true }
                        : new InstanceStatus
                        {
                            Id = i.Id,
                            State = i.Power == PowerStates.Running ? InstanceStates.Running : InstanceStates.Stopped,
                            BootGeneration = i.BootGeneration,
                            // A gdb stub is up as soon as asked for, on a running guest.
                            DebugEndpoint = i.Power == PowerStates.Running ? i.DebugEndpoint : "",
                        });
                }
                await _client.ReportStatusAsync(report, cancellationToken: ct);
            }
        }
        catch (Exception e) when (ct.IsCancellationRequested && e is OperationCanceledException or RpcException)
        {
        }
    }

    /// <summary>Sends a monitoring sample as a real agent would (the node id is filled in).</summary>
    public async Task ReportMetricsAsync(MetricsReport report)
    {
        report.NodeId = NodeId;
        await _client.ReportMetricsAsync(report);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loops;
        _channel.Dispose();
        _certificate.Dispose();
        _stop.Dispose();
    }
}
