using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Agents;

/// <summary>Marks nodes down when their heartbeats stop.</summary>
public sealed partial class NodeLivenessMonitor(NodeService nodes, TimeProvider time, ILogger<NodeLivenessMonitor> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var period = TimeSpan.FromMilliseconds(Math.Max(100, nodes.Health.DownAfter.TotalMilliseconds / 5));
        using var timer = new PeriodicTimer(period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    var down = await nodes.CheckLivenessAsync(stoppingToken);
                    if (down > 0) LogNodesDown(down);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogCheckFailed(e);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(LogLevel.Warning, "{Count} node(s) missed their heartbeats and are now down; their instances are lost")]
    private partial void LogNodesDown(int count);

    [LoggerMessage(LogLevel.Error, "node liveness check failed")]
    private partial void LogCheckFailed(Exception e);
}
