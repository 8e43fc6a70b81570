using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Clusters;

/// <summary>
/// Drives clusters forward on a timer: opens and closes reservation windows, aggregates member states, rolls back
/// clusters whose members failed and finishes teardowns. Everything it decides is in the database, so a kumod
/// restarted at any point picks up where it stopped.
/// </summary>
public sealed partial class ClusterReconciler(ClusterService clusters, IOptions<ClusterOptions> options, ILogger<ClusterReconciler> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.Interval);
        do
        {
            try
            {
                await clusters.ReconcileAllAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogPassFailed(e);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster reconciliation pass failed; retrying on the next tick")]
    private partial void LogPassFailed(Exception e);
}
