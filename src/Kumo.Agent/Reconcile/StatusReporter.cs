using System.Collections.Concurrent;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Reconcile;

/// <summary>
/// Sends observed instance states to kumod. The latest state per instance is kept, so after a broken connection a
/// full report carries everything kumod missed; a send that fails is never retried out of order.
/// </summary>
public sealed partial class StatusReporter(ILogger<StatusReporter> logger)
{
    private readonly ConcurrentDictionary<string, InstanceStatus> _latest = new();
    private readonly ConcurrentDictionary<string, VolumeStatus> _volumes = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private AgentControl.AgentControlClient? _client;
    private string? _nodeId;

    public void Attach(AgentControl.AgentControlClient client, string nodeId)
    {
        _client = client;
        _nodeId = nodeId;
    }

    public void Detach() => _client = null;

    public InstanceStatus? Latest(string id) => _latest.TryGetValue(id, out var s) ? s : null;

    public async Task ReportAsync(InstanceStatus status, CancellationToken ct)
    {
        if (_latest.TryGetValue(status.Id, out var old) && old.Equals(status)) return;
        _latest[status.Id] = status;
        if (status.Gone) _latest.TryRemove(status.Id, out _);
        await SendAsync([status], full: false, ct);
    }

    /// <summary>Sends the volume files' states that changed since the last report.</summary>
    public async Task ReportVolumesAsync(IReadOnlyList<VolumeStatus> statuses, CancellationToken ct)
    {
        var changed = statuses.Where(s => !_volumes.TryGetValue(s.Id, out var old) || !old.Equals(s)).ToList();
        if (changed.Count == 0) return;
        foreach (var s in changed)
        {
            if (s.Gone) _volumes.TryRemove(s.Id, out _);
            else _volumes[s.Id] = s;
        }
        await SendAsync([], full: false, ct, changed);
    }

    public Task SendFullAsync(CancellationToken ct) => SendAsync(_latest.Values.ToList(), full: true, ct, _volumes.Values.ToList());

    private async Task SendAsync(IReadOnlyList<InstanceStatus> statuses, bool full, CancellationToken ct, IReadOnlyList<VolumeStatus>? volumes = null)
    {
        var client = _client;
        if (client is null || _nodeId is null) return;
        await _sendLock.WaitAsync(ct);
        try
        {
            var report = new StatusReport { NodeId = _nodeId, Full = full };
            report.Instances.AddRange(statuses);
            if (volumes is not null) report.Volumes.AddRange(volumes);
            await client.ReportStatusAsync(report, cancellationToken: ct);
        }
        catch (Grpc.Core.RpcException e)
        {
            // The connection loop notices and re-sends a full report after reconnecting.
            LogReportFailed(e.Status.Detail);
        }
        catch (ObjectDisposedException)
        {
            // The connection loop disposed the channel (kumod went away) while this report was on its way: the same
            // as an undelivered report, not an error of the instance being reported.
            LogReportFailed("the connection to kumod was closed");
        }
        finally
        {
            _sendLock.Release();
        }
    }

    [LoggerMessage(LogLevel.Debug, "status report not delivered: {Reason}")]
    private partial void LogReportFailed(string reason);
}
