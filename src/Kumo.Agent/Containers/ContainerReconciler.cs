using System.Collections.Concurrent;
using System.Globalization;
using Docker.DotNet;
using Docker.DotNet.Models;
using Kumo.Agent.Reconcile;
using Kumo.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Containers;

/// <summary>
/// Converges the node's containers to the desired state, one pass at a time: list every container carrying a Kumo
/// instance label, act on each desired one (in parallel), remove those kumod no longer assigns here. Labels are the
/// only record: a restarted agent (even after kill -9) finds the same containers and never creates a second one.
/// </summary>
public sealed partial class ContainerReconciler(ContainerEngine engine, StatusReporter reporter, AgentOptions options, ILogger<ContainerReconciler> logger)
{
    public const string InstanceLabel = "kumo.instance-id";
    public const string ProjectLabel = "kumo.project";
    public const string OwnerLabel = "kumo.owner";
    public const string NameLabel = "kumo.name";

    private readonly SemaphoreSlim _kick = new(0, 1);
    private readonly ConcurrentDictionary<string, DesiredInstance> _desired = new();
    private readonly ConcurrentDictionary<string, string> _endings = new();
    private readonly ConcurrentDictionary<string, string> _pullFailures = new();
    private volatile bool _received;
    private bool _busyboxReady;
    private Task? _loop;

    private string GenerationsDir => Path.Combine(engine.Dir, "generations");

    private TimeSpan StopGrace => options.StopGracePeriod < TimeSpan.FromSeconds(10) ? options.StopGracePeriod : TimeSpan.FromSeconds(10);

    /// <summary>Replaces the desired containers (all of this node's, level-triggered) and starts a pass.</summary>
    public void Apply(IEnumerable<DesiredInstance> containers, CancellationToken ct)
    {
        var list = containers.ToList();
        foreach (var id in _desired.Keys.Except(list.Select(d => d.Id)).ToList()) _desired.TryRemove(id, out _);
        foreach (var d in list) _desired[d.Id] = d;
        _received = true;
        _loop ??= Task.Run(() => RunAsync(ct), ct);
        Kick();
    }

    public void Kick()
    {
        try
        {
            if (_kick.CurrentCount == 0) _kick.Release();
        }
        catch (SemaphoreFullException)
        {
        }
    }

    public Task StopAsync() => _loop ?? Task.CompletedTask;

    private async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _kick.WaitAsync(options.ResyncInterval, ct);
                if (_received) await PassAsync(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is DockerApiException or HttpRequestException or IOException or InvalidOperationException or TimeoutException)
            {
                LogPassFailed(e);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>One reconciliation pass over every desired and every present container.</summary>
    public async Task PassAsync(CancellationToken ct)
    {
        var desired = _desired.Values.ToList();
        // A node that never ran a container needs no engine: do not start podman just to find nothing.
        if (desired.Count == 0 && !Directory.Exists(engine.StorageRoot)) return;
        var client = await engine.ClientAsync(ct);
        var present = (await client.Containers.ListContainersAsync(new ContainersListParameters
        {
            All = true,
            Filters = new Dictionary<string, IDictionary<string, bool>> { ["label"] = new Dictionary<string, bool> { [InstanceLabel] = true } },
        }, ct)).GroupBy(c => c.Labels[InstanceLabel]).ToDictionary(g => g.Key, g => g.ToList());

        var work = new List<Task>();
        foreach (var d in desired)
            work.Add(GuardAsync(d.Id, d.BootGeneration, () => ConvergeAsync(client, d, present.GetValueOrDefault(d.Id) ?? [], ct), ct));
        foreach (var (id, containers) in present.Where(p => !_desired.ContainsKey(p.Key)))
            work.Add(GuardAsync(id, 0, () => RemoveAsync(client, id, containers, "no longer assigned to this node", ct), ct));
        await Task.WhenAll(work);
    }

    private async Task GuardAsync(string id, long generation, Func<Task> action, CancellationToken ct)
    {
        try
        {
            await action();
        }
        catch (Exception e) when (e is DockerApiException or HttpRequestException or IOException or InvalidOperationException
            or UnauthorizedAccessException or TimeoutException)
        {
            LogConvergeFailed(id, e);
            await ReportAsync(id, InstanceStates.Error, Short(e), generation, ct);
        }
    }

    private async Task ConvergeAsync(DockerClient client, DesiredInstance d, List<ContainerListResponse> present, CancellationToken ct)
    {
        if (d.Power == PowerStates.Deleted)
        {
            await RemoveAsync(client, d.Id, present, "deleted", ct);
            return;
        }
        // Labels make duplicates impossible to miss: keep the oldest, remove any extra (a crash mid-create, say).
        var ordered = present.OrderBy(c => c.Created).ToList();
        foreach (var extra in ordered.Skip(1))
            await client.Containers.RemoveContainerAsync(extra.ID, new ContainerRemoveParameters { Force = true }, ct);
        var containerId = ordered.FirstOrDefault()?.ID;

        if (containerId is null)
        {
            if (d.Power == PowerStates.Stopped && d.BootGeneration == 0)
            {
                // Created with --stopped: nothing to run yet; the container is made on first start.
                await ReportAsync(d.Id, InstanceStates.Stopped, "created (not started)", 0, ct);
                return;
            }
            // A pull that failed for this start was reported once; saying "creating" and the error again on every pass
            // would flap the instance's state (and could fail a delete that arrives meanwhile).
            if (_pullFailures.ContainsKey(PullKey(d))) return;
            await ReportAsync(d.Id, InstanceStates.Creating, "creating the container", d.BootGeneration, ct);
            containerId = await CreateAsync(client, d, ct);
            WriteGeneration(d.Id, 0);
        }

        var state = (await client.Containers.InspectContainerAsync(containerId, ct)).State;
        var started = ReadGeneration(d.Id, state.Running ? d.BootGeneration : 0);

        if (d.Power == PowerStates.Stopped)
        {
            if (state.Running)
            {
                var force = d.StopMode == StopModes.Force;
                await ReportAsync(d.Id, InstanceStates.Stopping, force ? "killing the process" : "stopping (SIGTERM, then SIGKILL)", started, ct);
                await StopAsync(client, containerId, force, ct);
                state = (await client.Containers.InspectContainerAsync(containerId, ct)).State;
            }
            // An OOM kill stays visible after kumod marks the container stopped; any other exit is just "stopped".
            var why = started > 0 ? await EndedAsync(containerId, state, d.MemoryBytes, ct) : "";
            await ReportAsync(d.Id, InstanceStates.Stopped, why.StartsWith("OOM", StringComparison.Ordinal) ? why : "stopped", started, ct);
            return;
        }

        // Desired: running.
        if (state.Running && started < d.BootGeneration)
        {
            await ReportAsync(d.Id, InstanceStates.Stopping, "restarting", started, ct);
            await StopAsync(client, containerId, force: false, ct);
            state = (await client.Containers.InspectContainerAsync(containerId, ct)).State;
        }
        if (!state.Running)
        {
            if (started >= d.BootGeneration && started > 0)
            {
                // It ran for the requested start and then ended by itself: that is reported, not restarted.
                await ReportAsync(d.Id, InstanceStates.Stopped, await EndedAsync(containerId, state, d.MemoryBytes, ct), started, ct);
                return;
            }
            await ReportAsync(d.Id, InstanceStates.Starting, "starting the process", d.BootGeneration, ct);
            // Recorded before starting: a crash between the two leaves a container that counts as started, never one started twice.
            WriteGeneration(d.Id, d.BootGeneration);
            await client.Containers.StartContainerAsync(containerId, new ContainerStartParameters(), ct);
            state = (await client.Containers.InspectContainerAsync(containerId, ct)).State;
            started = d.BootGeneration;
            if (!state.Running)
            {
                await ReportAsync(d.Id, InstanceStates.Stopped, await EndedAsync(containerId, state, d.MemoryBytes, ct), started, ct);
                return;
            }
            LogStarted(d.Id, EngineName(d), state.Pid);
        }
        await ReportAsync(d.Id, InstanceStates.Running, "process running", started, ct);
    }

    /// <summary>Why a container is not running any more, in the words a user needs.</summary>
    private async Task<string> EndedAsync(string containerId, ContainerState state, long memoryLimit, CancellationToken ct)
    {
        // Asked once per exit, not on every pass.
        var key = $"{containerId}@{state.FinishedAt}";
        if (_endings.TryGetValue(key, out var known)) return known;
        var why = Ended(state.OOMKilled || state.ExitCode == 137 && await KernelOomKilledAsync(containerId, ct), state.ExitCode, memoryLimit);
        _endings[key] = why;
        return why;
    }

    public static string Ended(bool oomKilled, long exitCode, long memoryLimit) =>
        oomKilled
            ? $"OOM-killed: the process went over its memory limit of {ByteSize.Human(memoryLimit)} (exit code {exitCode.ToString(CultureInfo.InvariantCulture)})"
            : $"exited with code {exitCode.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>
    /// conmon misses OOM kills on hybrid cgroup hosts (it watches the unified tree; the memory controller is in v1), so
    /// podman reports a plain SIGKILL. The kernel's OOM record names the container's memory cgroup, which ends in its id.
    /// </summary>
    private static async Task<bool> KernelOomKilledAsync(string containerId, CancellationToken ct)
    {
        var r = await ProcessRunner.RunAsync("dmesg", [], ct);
        return r.ExitCode == 0 && r.Stdout.Split('\n').Any(l => l.Contains("oom-kill:", StringComparison.Ordinal)
            && l.Contains($"oom_memcg=", StringComparison.Ordinal) && l.Contains(containerId, StringComparison.Ordinal));
    }

    private async Task<string> CreateAsync(DockerClient client, DesiredInstance d, CancellationToken ct)
    {
        // An image built with kumo ct build is named by kumod (it is on this node); built-in ones by their name.
        var image = d.ContainerImage.Length > 0 ? await BuiltImageAsync(d.ContainerImage, d.Image, ct)
            : RegistryReferences.IsReference(d.Image) ? await PulledImageAsync(d, ct)
            : await ImageReferenceAsync(d.Image, ct);
        var binds = new List<string>();
        foreach (var v in d.ContainerVolumes)
            binds.Add($"{await VolumePaths.ResolveAsync(options.ResolvedUserDataDir, d.Owner, v.Source, ct)}:{v.Target}:{(v.ReadOnly ? "ro" : "rw")}");
        var exposed = new Dictionary<string, EmptyStruct>();
        var bindings = new Dictionary<string, IList<PortBinding>>();
        foreach (var p in d.ContainerPorts)
        {
            var key = $"{p.ContainerPort_.ToString(CultureInfo.InvariantCulture)}/tcp";
            exposed[key] = default;
            bindings[key] = [new PortBinding { HostIP = p.HostIp.Length > 0 ? p.HostIp : "127.0.0.1", HostPort = p.HostPort.ToString(CultureInfo.InvariantCulture) }];
        }
        var parameters = new CreateContainerParameters
        {
            Name = EngineName(d),
            Hostname = d.Name,
            Image = image,
            Cmd = d.ContainerCommand.Count > 0 ? d.ContainerCommand.ToList() : null,
            Env = d.ContainerEnv.Select(e => $"{e.Key}={e.Value}").ToList(),
            // Open stdin that no one has attached to yet, and that stays open when someone detaches (not StdinOnce).
            OpenStdin = d.ContainerStdin,
            StdinOnce = false,
            Tty = d.ContainerTty,
            Labels = new Dictionary<string, string>
            {
                [InstanceLabel] = d.Id,
                [ProjectLabel] = d.Project,
                [OwnerLabel] = d.Owner,
                [NameLabel] = d.Name,
            },
            ExposedPorts = exposed,
            HostConfig = new HostConfig
            {
                Memory = d.MemoryBytes,
                // Swap equal to the limit means none: going over the limit is an OOM kill, not a slow crawl through swap.
                MemorySwap = d.MemoryBytes,
                // The engine turns this into a CFS quota: 0.5 CPU is 50 ms of every 100 ms period.
                NanoCPUs = d.ContainerCpuLimit > 0 ? (long)Math.Round(d.ContainerCpuLimit * 1_000_000_000d) : d.Cpus * 1_000_000_000L,
                PortBindings = bindings,
                Binds = binds,
                Privileged = false,
                CapDrop = ["NET_RAW"],
                SecurityOpt = ["no-new-privileges"],
                PidsLimit = 4096,
            },
        };
        try
        {
            return (await client.Containers.CreateContainerAsync(parameters, ct)).ID;
        }
        catch (DockerApiException e) when (e.StatusCode is System.Net.HttpStatusCode.Conflict or System.Net.HttpStatusCode.InternalServerError
            && e.ResponseBody.Contains("already in use", StringComparison.OrdinalIgnoreCase))
        {
            // OWNER-NAME is taken by another of the owner's instances (same name in another project): add the id.
            parameters.Name = $"{EngineName(d)}-{d.Id[^6..]}";
            return (await client.Containers.CreateContainerAsync(parameters, ct)).ID;
        }
    }

    /// <summary>The engine-level name: the owner's name first, so names never collide across users on a node.</summary>
    public static string EngineName(DesiredInstance d) => $"{(d.Owner.Length > 0 ? d.Owner : d.Project)}-{d.Name}";

    private async Task<string> BuiltImageAsync(string reference, string name, CancellationToken ct)
    {
        var exists = await engine.PodmanAsync(["image", "exists", reference], ct);
        return exists.ExitCode == 0 ? reference : throw new InvalidOperationException($"image '{name}' ({reference}) is not on this node");
    }

    /// <summary>
    /// A registry image, pulled when the engine does not have it; podman's progress lines become the instance's
    /// status. A failed pull is not retried on every pass, only when the container is asked to start again.
    /// </summary>
    private async Task<string> PulledImageAsync(DesiredInstance d, CancellationToken ct)
    {
        var key = PullKey(d);
        try
        {
            await RegistryPulls.PullAsync(engine, d.Image, d.ContainerRegistryInsecure,
                line => ReportAsync(d.Id, InstanceStates.Creating, $"pulling {d.Image}: {line}", d.BootGeneration, ct), ct);
        }
        catch (InvalidOperationException e)
        {
            _pullFailures[key] = e.Message;
            throw;
        }
        return d.Image;
    }

    private static string PullKey(DesiredInstance d) => $"{d.Id}@{d.BootGeneration.ToString(CultureInfo.InvariantCulture)}@{d.Image}";

    private async Task<string> ImageReferenceAsync(string image, CancellationToken ct)
    {
        if (image == "busybox")
        {
            if (!_busyboxReady) await BaseImages.EnsureBusyboxAsync(engine, ct);
            _busyboxReady = true;
            return BaseImages.BusyboxReference;
        }
        if (image == "debian")
        {
            await BaseImages.EnsureDebianAsync(engine, ct);
            return BaseImages.DebianReference;
        }
        var reference = $"localhost/{image}:latest";
        var exists = await engine.PodmanAsync(["image", "exists", reference], ct);
        return exists.ExitCode == 0 ? reference : throw new InvalidOperationException($"image '{image}' is not on this node");
    }

    private async Task StopAsync(DockerClient client, string containerId, bool force, CancellationToken ct)
    {
        if (force)
        {
            await client.Containers.KillContainerAsync(containerId, new ContainerKillParameters { Signal = "KILL" }, ct);
            // The kill is asynchronous in the engine: wait for it, so the next step sees the container stopped.
            await client.Containers.WaitContainerAsync(containerId, ct);
            return;
        }
        await client.Containers.StopContainerAsync(containerId, new ContainerStopParameters { WaitBeforeKillSeconds = (uint)StopGrace.TotalSeconds }, ct);
    }

    private async Task RemoveAsync(DockerClient client, string id, List<ContainerListResponse> present, string why, CancellationToken ct)
    {
        foreach (var c in present)
        {
            await ReportAsync(id, InstanceStates.Stopping, "removing the container", 0, ct);
            await client.Containers.RemoveContainerAsync(c.ID, new ContainerRemoveParameters { Force = true, RemoveVolumes = true }, ct);
        }
        File.Delete(Path.Combine(GenerationsDir, id));
        foreach (var key in _pullFailures.Keys.Where(k => k.StartsWith(id + "@", StringComparison.Ordinal))) _pullFailures.TryRemove(key, out _);
        await reporter.ReportAsync(new InstanceStatus { Id = id, State = InstanceStates.Stopped, Gone = true, Message = "deleted" }, ct);
        if (present.Count > 0) LogRemoved(id, why);
    }

    /// <summary>The boot generation a container was last started for, kept next to the engine's storage.</summary>
    private long ReadGeneration(string id, long fallback)
    {
        var file = Path.Combine(GenerationsDir, id);
        return File.Exists(file) && long.TryParse(File.ReadAllText(file), NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : fallback;
    }

    private void WriteGeneration(string id, long generation)
    {
        Directory.CreateDirectory(GenerationsDir);
        Kumo.Core.Files.DurableFile.Write(Path.Combine(GenerationsDir, id), generation.ToString(CultureInfo.InvariantCulture), UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private Task ReportAsync(string id, string state, string message, long generation, CancellationToken ct) =>
        reporter.ReportAsync(new InstanceStatus { Id = id, State = state, Message = message, BootGeneration = generation }, ct);

    private static string Short(Exception e) => e is DockerApiException d
        ? $"container engine: {d.ResponseBody.Trim()}"
        : e.Message;

    [LoggerMessage(LogLevel.Warning, "container pass failed")]
    private partial void LogPassFailed(Exception e);

    [LoggerMessage(LogLevel.Warning, "container {Id}: converge failed")]
    private partial void LogConvergeFailed(string id, Exception e);

    [LoggerMessage(LogLevel.Information, "container {Id} started as {Name} (pid {Pid})")]
    private partial void LogStarted(string id, string name, long pid);

    [LoggerMessage(LogLevel.Information, "container {Id} removed ({Why})")]
    private partial void LogRemoved(string id, string why);
}
