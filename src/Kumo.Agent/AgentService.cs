using Grpc.Core;
using Kumo.Agent.Consoles;
using Kumo.Agent.Images;
using Kumo.Agent.Metrics;
using Kumo.Agent.Qemu;
using Kumo.Agent.Reconcile;
using Kumo.Agent.Security;
using Kumo.Protocol;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent;

/// <summary>
/// The agent's connection to kumod: register, then heartbeat, watch the desired state and reconcile, until the
/// connection breaks; then back off and start over. Guests keep running while kumod is away. Every call uses mutual
/// TLS with the node certificate in STATE/pki (see <see cref="AgentEnrollment"/>).
/// </summary>
public sealed partial class AgentService(AgentOptions options, ILoggerFactory loggers) : BackgroundService
{
    public const string Version = "0.1.0";

    // A refused certificate does not heal by itself: retry slowly, so the log says it without flooding.
    private static readonly TimeSpan RefusedBackoff = TimeSpan.FromSeconds(30);

    private readonly ILogger _logger = loggers.CreateLogger<AgentService>();
    private readonly TaskCompletionSource<string> _registered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with the node id after the first registration.</summary>
    public Task<string> Registered => _registered.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        Directory.CreateDirectory(options.StateDir);
        var images = new ImageStore(options.ResolvedImagesDir, options.ScriptsDir, Path.Combine(options.StateDir, "images"));
        var accelerator = await AcceleratorProbe.DecideAsync(options, images, _logger, stoppingToken);
        var driver = new QemuDriver(options.StateDir, accelerator, loggers.CreateLogger<QemuDriver>());
        driver.CleanTrash();
        Libvirt.LibvirtDriver? libvirt = null;
        if (options.LibvirtUri is { } uri)
        {
            libvirt = new Libvirt.LibvirtDriver(new Libvirt.Virsh(uri), options.StateDir, options.NodeName, accelerator, loggers.CreateLogger<Libvirt.LibvirtDriver>());
            libvirt.CleanTrash();
            // Before the first desired state: a domain of this node's whose directory was lost is still known. A libvirtd
            // that does not answer must not take the node down: its QEMU VMs and containers go on, templated VMs
            // report virsh's error until it answers.
            try
            {
                await libvirt.RefreshAsync(stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                LogLibvirtUnavailable(uri, e.Message);
            }
        }
        var reporter = new StatusReporter(loggers.CreateLogger<StatusReporter>());
        var consoles = new ConsoleHub(id => libvirt?.ConsoleOf(id) ?? driver.ConsoleOf(id), loggers.CreateLogger<GuestConsole>());
        var networks = new Networking.NetworkManager(options.StateDir, loggers.CreateLogger<Networking.NetworkManager>(), options.ResyncInterval)
        {
            VxlanAddress = options.VxlanAddress,
        };
        if (options.VxlanAddress is null) LogVxlanOff();
        var networkLoop = networks.RunAsync(stoppingToken);
        await using var engine = new Containers.ContainerEngine(options.StateDir, loggers.CreateLogger<Containers.ContainerEngine>());
        var containers = new Containers.ContainerReconciler(engine, reporter, options, loggers.CreateLogger<Containers.ContainerReconciler>());
        var reconciler = new Reconciler(driver, images, reporter, consoles, options, loggers, networks, containers) { Libvirt = libvirt };
        var containerSessions = new Containers.ContainerSessions(engine,
            new Containers.ContainerBuilds(engine, loggers.CreateLogger<Containers.ContainerBuilds>()), loggers.CreateLogger<Containers.ContainerSessions>());
        var sessions = new ConsoleSessions(consoles, containerSessions, loggers.CreateLogger<ConsoleSessions>());
        var metrics = new MetricsReporter(driver, options, loggers.CreateLogger<MetricsReporter>());
        var (cpus, memory) = HostFacts.Capacity(options);
        var credentials = new AgentCredentials(options.StateDir);
        var backoff = TimeSpan.FromMilliseconds(200);

        while (!stoppingToken.IsCancellationRequested)
        {
            var refused = false;
            try
            {
                using var ca = credentials.LoadCa();
                using var certificate = credentials.LoadClientCertificate();
                using var channel = AgentChannel.Create(options.ServerUrl, ca, certificate);
                var client = new AgentControl.AgentControlClient(channel);
                var request = new RegisterRequest
                {
                    NodeName = options.NodeName,
                    Cpus = cpus,
                    MemoryBytes = memory,
                    Accelerator = accelerator,
                    AgentVersion = Version,
                    VxlanAddress = options.VxlanAddress ?? "",
                };
                foreach (var (k, v) in options.Labels) request.Labels[k] = v;
                if (libvirt is not null) request.Labels[AgentOptions.LibvirtLabel] = "true";
                var reply = await client.RegisterAsync(request, cancellationToken: stoppingToken);
                LogRegistered(options.NodeName, reply.NodeId, accelerator, cpus, memory / (1024 * 1024));
                _registered.TrySetResult(reply.NodeId);
                reporter.Attach(client, reply.NodeId);
                networks.NodeId = reply.NodeId;
                images.Attach(client, reply.NodeId);
                backoff = TimeSpan.FromMilliseconds(200);
                try
                {
                    await RunConnectedAsync(client, reply, reporter, reconciler, sessions, metrics, stoppingToken);
                }
                finally
                {
                    // Before the channel is disposed: nothing may send through a client whose channel is gone.
                    reporter.Detach();
                    images.Detach();
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.PermissionDenied or StatusCode.Unauthenticated)
            {
                LogRefused(options.NodeName, options.ServerUrl, e.Status.Detail);
                refused = true;
                if (options.Reenroll is { } reenroll)
                {
                    try
                    {
                        await reenroll(stoppingToken);
                        refused = false;
                    }
                    catch (Exception again)
                    {
                        LogDisconnected(options.ServerUrl, again.Message);
                    }
                }
            }
            catch (Exception e) when (e is RpcException or HttpRequestException or IOException or ReconnectException
                or System.Security.Cryptography.CryptographicException)
            {
                LogDisconnected(options.ServerUrl, e.Message);
            }
            reporter.Detach();
            images.Detach();
            try
            {
                await Task.Delay(refused ? RefusedBackoff : backoff, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            backoff = TimeSpan.FromMilliseconds(Math.Min(5000, backoff.TotalMilliseconds * 2));
        }
        await reconciler.StopAsync();
        await consoles.CloseAllAsync();
        await networkLoop;
    }

    private async Task RunConnectedAsync(AgentControl.AgentControlClient client, RegisterReply reply, StatusReporter reporter,
        Reconciler reconciler, ConsoleSessions sessions, MetricsReporter metrics, CancellationToken stoppingToken)
    {
        using var session = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var ct = session.Token;
        var nodeId = reply.NodeId;

        async Task WatchAsync()
        {
            using var call = client.WatchDesired(new WatchRequest { NodeId = nodeId }, cancellationToken: ct);
            var first = true;
            await foreach (var state in call.ResponseStream.ReadAllAsync(ct))
            {
                reconciler.Apply(state, stoppingToken);
                if (first)
                {
                    // After (re)connecting kumod may have missed reports: send everything we know.
                    await reporter.SendFullAsync(ct);
                    first = false;
                }
            }
            throw new ReconnectException("desired-state stream ended");
        }

        async Task HeartbeatAsync()
        {
            var interval = TimeSpan.FromMilliseconds(Math.Max(100, reply.HeartbeatIntervalMs));
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(interval, ct);
                var hb = await client.HeartbeatAsync(new HeartbeatRequest { NodeId = nodeId }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
                if (!hb.Known) throw new ReconnectException("kumod no longer knows this node; registering again");
                if (hb.Resync) await reporter.SendFullAsync(ct);
            }
        }

        async Task ResyncAsync()
        {
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(options.ResyncInterval, ct);
                reconciler.KickAll();
            }
        }

        async Task MetricsAsync()
        {
            await metrics.RunAsync(client, nodeId, ct);
            // Only an older kumod ends it early: wait with the others.
            await Task.Delay(Timeout.Infinite, ct);
        }

        async Task ConsolesAsync()
        {
            await sessions.WatchAsync(client, nodeId, ct);
            throw new ReconnectException("console watch ended");
        }

        var tasks = new[] { WatchAsync(), HeartbeatAsync(), ResyncAsync(), ConsolesAsync(), MetricsAsync() };
        try
        {
            await await Task.WhenAny(tasks);
        }
        finally
        {
            await session.CancelAsync();
            try
            {
                await Task.WhenAll(tasks);
            }
            catch (Exception) when (!stoppingToken.IsCancellationRequested || true)
            {
                // The first failure was already rethrown above; the rest are its echoes.
            }
        }
    }

    private sealed class ReconnectException(string message) : Exception(message);

    [LoggerMessage(LogLevel.Information, "VXLAN is off (no --vxlan-address): this node's tenant networks do not reach guests on other nodes")]
    private partial void LogVxlanOff();

    [LoggerMessage(LogLevel.Information, "registered node {Name} as {Id} ({Accel}, {Cpus} CPUs, {MemoryMiB} MiB)")]
    private partial void LogRegistered(string name, string id, string accel, int cpus, long memoryMiB);

    [LoggerMessage(LogLevel.Error, "kumod at {Url} refused node {Name}: {Reason}")]
    private partial void LogRefused(string name, Uri url, string reason);

    [LoggerMessage(LogLevel.Warning, "libvirt at {Uri} does not answer ({Reason}); templated VMs wait for it")]
    private partial void LogLibvirtUnavailable(string uri, string reason);

    [LoggerMessage(LogLevel.Warning, "lost connection to kumod at {Url}: {Reason}; retrying")]
    private partial void LogDisconnected(Uri url, string reason);
}

internal static class HostFacts
{
    public static (int Cpus, long Memory) Capacity(AgentOptions options)
    {
        var cpus = options.CapacityCpus ?? Environment.ProcessorCount;
        var memory = options.CapacityMemoryBytes ?? MemTotal();
        return (cpus, memory);
    }

    private static long MemTotal()
    {
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (!line.StartsWith("MemTotal:", StringComparison.Ordinal)) continue;
            var kb = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
            return kb * 1024;
        }
        return 0;
    }
}
