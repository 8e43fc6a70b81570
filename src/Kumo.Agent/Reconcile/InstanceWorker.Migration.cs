using Kumo.Agent.Qemu;
using Kumo.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Reconcile;

/// <summary>
/// This node's side of a live migration, driven by the desired state: the target starts a QEMU that waits for the
/// guest (<c>migrate_incoming</c>), the source sends it once kumod says where (<c>migrate_to</c>). Both report what
/// QEMU says; kumod alone decides the outcome (moves the instance, or calls the migration off). A marker file in the
/// instance directory records which migration this node's QEMU belongs to, so a restarted agent carries on (or
/// reports) instead of starting the same migration twice.
/// </summary>
internal sealed partial class InstanceWorker
{
    private static readonly TimeSpan MigrationPoll = TimeSpan.FromMilliseconds(100);

    /// <summary>The migration fields stamped on every report of this instance while a migration is in flight.</summary>
    private volatile MigrationReport? _migration;

    private sealed record MigrationReport(string Id, string State, string Error = "", long Transferred = 0, long Total = 0, long DowntimeMs = 0, long TotalMs = 0);

    /// <returns>True when the instance is taking part in a migration and the pass is over.</returns>
    private async Task<bool> MigrationAsync(DesiredInstance d, VmObservation obs, CancellationToken ct)
    {
        if (!string.IsNullOrEmpty(d.MigrateIncoming))
        {
            await IncomingAsync(d, obs, ct);
            return true;
        }
        if (!string.IsNullOrEmpty(d.MigrationId))
        {
            await OutgoingAsync(d, obs, ct);
            return true;
        }
        await ForgetMigrationAsync(obs, ct);
        return false;
    }

    /// <summary>Target: start the waiting QEMU once, then watch it until the guest has arrived (or QEMU gave up).</summary>
    private async Task IncomingAsync(DesiredInstance d, VmObservation obs, CancellationToken ct)
    {
        var marker = $"in {d.MigrationId}";
        if (!obs.Running)
        {
            if (driver.MigrationMarker(id) == marker)
            {
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "failed", "the QEMU waiting for the guest on the target node exited"), ct);
                return;
            }
            // Anything here is left from an earlier attempt: the guest must arrive on a fresh overlay.
            if (obs.DiskExists)
            {
                await consoles.CloseAsync(id);
                await driver.DeleteAsync(id, ct);
            }
            var spec = await SpecAsync(d, ct) with { Incoming = d.MigrateIncoming, Volumes = [] };
            await driver.EnsureDiskAsync(spec, ct);
            driver.SetMigrationMarker(id, marker);
            try
            {
                await driver.LaunchAsync(spec, d.BootGeneration, ct);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException)
            {
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "failed", $"the target node could not start QEMU: {e.Message}"), ct);
                return;
            }
            obs = driver.Inspect(id);
            if (obs.Pid is null)
            {
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "failed", "QEMU on the target node exited right after starting"), ct);
                return;
            }
            LogIncoming(id, d.MigrateIncoming);
        }
        // Attached now, so the console has every line the guest prints after it arrives.
        consoles.Get(id)?.Attach(obs.Pid!.Value);
        while (_desired?.MigrateIncoming == d.MigrateIncoming)
        {
            string state;
            try
            {
                state = await driver.RunStateAsync(id, ct);
            }
            catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
            {
                if (driver.Inspect(id).Running) throw;
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "failed", "the QEMU receiving the guest on the target node exited (the transfer broke off)"), ct);
                return;
            }
            if (state != "inmigrate")
            {
                // QEMU starts the guest only after it has loaded every byte of its state.
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "received"), ct);
                return;
            }
            await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "listening"), ct);
            await Task.Delay(MigrationPoll, ct);
        }
    }

    /// <summary>Source: issue migrate once (when the target listens), then follow it to its end.</summary>
    private async Task OutgoingAsync(DesiredInstance d, VmObservation obs, CancellationToken ct)
    {
        var marker = $"out {d.MigrationId}";
        var issued = driver.MigrationMarker(id) == marker;
        if (!obs.Running)
        {
            // Before migrate was issued the guest simply died here; after, only the target can tell whether it arrived.
            await MigrationReportAsync(d, issued
                ? new MigrationReport(d.MigrationId, "lost", "the guest's QEMU on the source node exited during the migration")
                : new MigrationReport(d.MigrationId, "failed", "the guest is not running on the source node"), ct, InstanceStates.Stopping);
            return;
        }
        if (!issued)
        {
            if (string.IsNullOrEmpty(d.MigrateTo))
            {
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "waiting"), ct);
                return;
            }
            driver.SetMigrationMarker(id, marker);
            try
            {
                await driver.StartMigrationAsync(id, d.MigrateTo, options.MigrationBandwidth, ct);
            }
            catch (QmpException e)
            {
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "failed", e.Message), ct);
                return;
            }
            LogOutgoing(id, d.MigrateTo);
        }
        while (true)
        {
            MigrationProgress p;
            try
            {
                p = await driver.QueryMigrationAsync(id, ct);
            }
            catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
            {
                if (driver.Inspect(id).Running) throw;
                Kick();
                return;
            }
            if (p.Active)
            {
                await MigrationReportAsync(d, new MigrationReport(d.MigrationId, "active", Transferred: p.TransferredBytes, Total: p.TotalBytes), ct);
                // Called off by kumod: the next pass cancels it.
                if (_desired?.MigrationId != d.MigrationId) return;
                await Task.Delay(MigrationPoll, ct);
                continue;
            }
            var report = p.Status switch
            {
                "completed" => new MigrationReport(d.MigrationId, "completed", "", p.TransferredBytes, p.TotalBytes, p.DowntimeMs, p.TotalMs),
                "none" => new MigrationReport(d.MigrationId, "failed", "the migration was never started (the agent stopped before QEMU got the command)"),
                _ => new MigrationReport(d.MigrationId, "failed", p.Error ?? $"QEMU's migration ended {p.Status}"),
            };
            await MigrationReportAsync(d, report, ct);
            if (report.State == "completed") LogMigrated(id, p.TotalMs, p.DowntimeMs);
            return;
        }
    }

    /// <summary>No migration is wanted (any more): undo what is left of one kumod called off, then carry on as usual.</summary>
    private async Task ForgetMigrationAsync(VmObservation obs, CancellationToken ct)
    {
        _migration = null;
        var marker = driver.MigrationMarker(id);
        if (marker is null) return;
        if (marker.StartsWith("out ", StringComparison.Ordinal) && obs.Running)
        {
            var p = await driver.QueryMigrationAsync(id, ct);
            if (p.Active) await driver.CancelMigrationAsync(id, ct);
            // kumod calls a migration off only when the target does not have the guest: this copy is the one.
            if (await driver.RunStateAsync(id, ct) == "postmigrate") await driver.ResumeAsync(id, ct);
            LogCalledOff(id);
        }
        driver.SetMigrationMarker(id, null);
    }

    private Task MigrationReportAsync(DesiredInstance d, MigrationReport report, CancellationToken ct, string? state = null)
    {
        _migration = report;
        var message = report.State switch
        {
            "listening" => "waiting for the guest to arrive",
            "received" => "the guest arrived",
            "waiting" => "waiting for the target node to listen",
            "active" => $"migrating: {ByteSize.Human(report.Transferred)} of {ByteSize.Human(report.Total)} sent",
            "completed" => "migrated; the target runs the guest",
            _ => $"migration {report.State}: {report.Error}",
        };
        var incoming = !string.IsNullOrEmpty(d.MigrateIncoming);
        return ReportAsync(state ?? (incoming ? InstanceStates.Starting : InstanceStates.Running), message, d.BootGeneration, ct);
    }

    private InstanceStatus WithMigration(InstanceStatus status)
    {
        if (_migration is not { } m) return status;
        status.MigrationId = m.Id;
        status.MigrationState = m.State;
        status.MigrationError = m.Error;
        status.MigrationTransferredBytes = m.Transferred;
        status.MigrationTotalBytes = m.Total;
        status.MigrationDowntimeMs = m.DowntimeMs;
        status.MigrationTotalMs = m.TotalMs;
        return status;
    }

    [LoggerMessage(LogLevel.Information, "instance {Id}: waiting for the migrating guest on {Endpoint}")]
    private partial void LogIncoming(string id, string endpoint);

    [LoggerMessage(LogLevel.Information, "instance {Id}: migrating to {Endpoint}")]
    private partial void LogOutgoing(string id, string endpoint);

    [LoggerMessage(LogLevel.Information, "instance {Id}: migrated in {TotalMs} ms ({DowntimeMs} ms downtime)")]
    private partial void LogMigrated(string id, long totalMs, long downtimeMs);

    [LoggerMessage(LogLevel.Information, "instance {Id}: migration called off; the guest runs on here")]
    private partial void LogCalledOff(string id);
}
