using System.Collections.Concurrent;
using Kumo.Agent.Consoles;
using Kumo.Agent.Images;
using Kumo.Agent.Qemu;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Reconcile;

/// <summary>Maps the node's desired state onto one worker per instance, including guests no longer assigned here.</summary>
public sealed class Reconciler(IVmDriver driver, ImageStore images, StatusReporter reporter, ConsoleHub consoles, AgentOptions options, ILoggerFactory loggers,
    Networking.NetworkManager networks, Containers.ContainerReconciler? containers = null)
{
    private readonly ConcurrentDictionary<string, (InstanceWorker Worker, Task Run)> _workers = new();
    private readonly ILogger _logger = loggers.CreateLogger<InstanceWorker>();
    private readonly VolumeManager _volumes = new(driver, reporter, loggers.CreateLogger<VolumeManager>());
    private Task? _volumeLoop;

    public int Workers => _workers.Count;

    /// <summary>Runs the VMs made from domain templates; null when the node has no libvirt driver.</summary>
    public IVmDriver? Libvirt { get; init; }

    public void Apply(DesiredState state, CancellationToken ct)
    {
        // Networks first: a worker about to launch looks its networks up here.
        networks.SetDesired(state.Networks);
        _volumes.Apply(state.Volumes);
        _volumeLoop ??= Task.Run(() => _volumes.RunAsync(options.ResyncInterval, ct), ct);
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        // Containers converge in their own loop, against the container engine.
        containers?.Apply(state.Instances.Where(d => d.Type == Core.InstanceTypes.Container), ct);
        foreach (var d in state.Instances.Where(d => d.Type != Core.InstanceTypes.Container || containers is null))
        {
            wanted.Add(d.Id);
            if (d.DomainTemplate.Length > 0 && Libvirt is null)
            {
                // kumod places templated VMs only on nodes that say they have libvirt; this one was started without it since.
                _ = reporter.ReportAsync(new InstanceStatus
                {
                    Id = d.Id,
                    State = Core.InstanceStates.Error,
                    BootGeneration = d.BootGeneration,
                    Message = "this node's agent runs without --libvirt; the VM needs the libvirt driver"
                }, ct);
                continue;
            }
            Worker(d.Id, d.DomainTemplate.Length > 0 ? Libvirt : driver, ct).SetDesired(d);
        }
        // Anything on this node that kumod does not assign here is removed: nothing is orphaned.
        var libvirtLocal = Libvirt?.ListLocal() ?? [];
        foreach (var id in driver.ListLocal().Concat(libvirtLocal).Concat(_workers.Keys).Distinct().Where(id => !wanted.Contains(id)).ToList())
            Worker(id, libvirtLocal.Contains(id) ? Libvirt : driver, ct).SetDesired(null);
    }

    public void KickAll()
    {
        containers?.Kick();
        foreach (var (w, _) in _workers.Values) w.Kick();
    }

    /// <summary>The instance's worker; a new one runs on <paramref name="on"/> (an instance keeps its driver for life).</summary>
    private InstanceWorker Worker(string id, IVmDriver? on, CancellationToken ct)
    {
        while (true)
        {
            if (_workers.TryGetValue(id, out var existing)) return existing.Worker;
            var worker = new InstanceWorker(id, on ?? driver, images, reporter, consoles, _volumes, options, _logger, networks);
            var gate = new TaskCompletionSource();
            var run = RunAsync(worker, gate.Task, ct);
            if (_workers.TryAdd(id, (worker, run)))
            {
                gate.SetResult();
                return worker;
            }
            gate.SetCanceled(CancellationToken.None);
        }
    }

    private async Task RunAsync(InstanceWorker worker, Task gate, CancellationToken ct)
    {
        try
        {
            await gate;
        }
        catch (OperationCanceledException)
        {
            return;
        }
        try
        {
            await worker.RunAsync(ct);
        }
        finally
        {
            _workers.TryRemove(worker.Id, out _);
        }
    }

    /// <summary>Waits for every worker loop to end (agent shutdown).</summary>
    public Task StopAsync() => Task.WhenAll(_workers.Values.Select(w => w.Run).Append(_volumeLoop ?? Task.CompletedTask).Append(containers?.StopAsync() ?? Task.CompletedTask));
}
