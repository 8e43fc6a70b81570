using System.Diagnostics;
using Grpc.Core;
using Kumo.Agent.Qemu;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Metrics;

/// <summary>
/// Samples the node and every running guest every <see cref="AgentOptions.MetricsInterval"/> and sends the sample
/// to kumod while connected. Nothing is buffered while kumod is away: counters are cumulative at their source, so
/// the next sample after reconnecting carries everything that happened (only resolution is lost).
/// </summary>
public sealed partial class MetricsReporter(QemuDriver driver, AgentOptions options, ILogger<MetricsReporter> logger)
{
    private readonly NodeSampler _node = new(options.StateDir);
    private readonly GuestSampler _guests = new(driver);
    private long _samples;
    private long _sampleTicks;

    /// <summary>Samples taken, and the wall time they took in total (for the overhead figure in the README).</summary>
    public (long Samples, TimeSpan Spent) Cost => (Interlocked.Read(ref _samples), Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _sampleTicks)));

    public async Task<MetricsReport> SampleAsync(string nodeId, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var report = new MetricsReport
        {
            NodeId = nodeId,
            Node = _node.Sample(),
            IntervalMs = (int)options.MetricsInterval.TotalMilliseconds,
        };
        foreach (var id in driver.ListLocal())
        {
            if (await _guests.SampleAsync(id, ct) is { } guest) report.Guests.Add(guest);
        }
        Interlocked.Increment(ref _samples);
        Interlocked.Add(ref _sampleTicks, Stopwatch.GetTimestamp() - started);
        return report;
    }

    /// <summary>Runs until the connection ends; an RPC failure ends it (the connection loop reconnects).</summary>
    public async Task RunAsync(AgentControl.AgentControlClient client, string nodeId, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(options.MetricsInterval);
        do
        {
            MetricsReport report;
            try
            {
                report = await SampleAsync(nodeId, ct);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException
                or ArgumentException or InvalidOperationException)
            {
                // A sample that cannot be read must not cost the connection (guests and heartbeats go on): skip it.
                LogSampleFailed(e.Message);
                continue;
            }
            try
            {
                await client.ReportMetricsAsync(report, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unimplemented)
            {
                // An older kumod: keep the connection, stop sampling for it.
                LogUnsupported(e.Status.Detail);
                return;
            }
        }
        while (await timer.WaitForNextTickAsync(ct));
    }

    [LoggerMessage(LogLevel.Warning, "metrics sample skipped: {Reason}")]
    private partial void LogSampleFailed(string reason);

    [LoggerMessage(LogLevel.Warning, "kumod does not take metrics reports ({Reason}); not sampling")]
    private partial void LogUnsupported(string reason);
}
