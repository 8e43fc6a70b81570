using Grpc.Net.Client;
using Kumo.Agent.Reconcile;
using Kumo.Protocol;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kumo.IntegrationTests.Agent;

/// <summary>The agent's status reporter across a broken connection to kumod.</summary>
public sealed class StatusReporterTests
{
    /// <summary>
    /// Regression: when kumod went away the connection loop disposed the channel while an instance worker was still
    /// reporting through it; the ObjectDisposedException reached the worker, which put the instance in error (a live
    /// migration then failed with "Cannot access a disposed object" after kumod was restarted).
    /// </summary>
    [Fact]
    public async Task AReport_ThroughAChannelDisposedByAReconnect_IsDroppedLikeAnyUndeliveredReport()
    {
        var reporter = new StatusReporter(NullLogger<StatusReporter>.Instance);
        var channel = GrpcChannel.ForAddress("http://127.0.0.1:9");
        reporter.Attach(new AgentControl.AgentControlClient(channel), "node-1");
        channel.Dispose();

        await reporter.ReportAsync(new InstanceStatus { Id = "i1", State = "running" }, CancellationToken.None);

        // Kept for the full report the connection loop sends after reconnecting.
        Assert.Equal("running", reporter.Latest("i1")!.State);
    }
}
