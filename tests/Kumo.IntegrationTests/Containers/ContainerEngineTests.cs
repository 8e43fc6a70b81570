using System.Diagnostics;
using Docker.DotNet;
using Docker.DotNet.Models;
using Kumo.Agent.Containers;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kumo.IntegrationTests.Containers;

/// <summary>
/// The agent's container engine against a real <c>podman system service</c> with runc, storage in a temp state dir,
/// and a busybox image built from the busybox-static package (no registry).
/// </summary>
[Trait("Category", "Slow")]
public sealed class ContainerEngineTests : IAsyncLifetime
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), $"kumo-ct-{Guid.NewGuid():n}"[..20]);
    private ContainerEngine _engine = null!;

    public Task InitializeAsync()
    {
        _engine = new ContainerEngine(_state, NullLogger<ContainerEngine>.Instance);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        // Containers outlive the service by design (conmon): remove them so nothing leaks into other tests.
        await _engine.PodmanAsync(["rm", "--all", "--force", "--time", "0"], CancellationToken.None);
        await _engine.DisposeAsync();
        Directory.Delete(_state, recursive: true);
    }

    [Fact]
    public async Task Engine_OnThisHost_ChoosesRuncLowersUlimitsAndRunsBusyboxWithMemoryLimit()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var client = await _engine.ClientAsync(cts.Token);
        var quirks = _engine.Quirks!;
        Assert.Equal("runc", quirks.Runtime);
        var conf = await File.ReadAllTextAsync(_engine.ConfigFile, cts.Token);
        Assert.Contains("runtime = \"runc\"", conf, StringComparison.Ordinal);
        if (quirks.NofileUlimit is { } nofile) Assert.Contains($"nofile={nofile}", conf, StringComparison.Ordinal);

        await BaseImages.EnsureBusyboxAsync(_engine, cts.Token);
        await BaseImages.EnsureBusyboxAsync(_engine, cts.Token); // idempotent
        var id = await RunAsync(client, "t1", 64L * 1024 * 1024, cts.Token);

        var inspect = await client.Containers.InspectContainerAsync(id, cts.Token);
        Assert.True(inspect.State.Running);
        Assert.Equal(64L * 1024 * 1024, ReadMemoryLimit(inspect.State.Pid));
        Assert.StartsWith(_engine.StorageRoot, inspect.GraphDriver.Data["UpperDir"], StringComparison.Ordinal);

        // The lowered ulimits are in effect inside the container (podman's defaults could not be granted here).
        if (quirks.NofileUlimit is { } expected)
        {
            var limits = await File.ReadAllTextAsync($"/proc/{inspect.State.Pid}/limits", cts.Token);
            var line = limits.Split('\n').Single(l => l.StartsWith("Max open files", StringComparison.Ordinal));
            Assert.Contains(expected.Split(':')[0], line, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Engine_ServiceKilled_IsRestartedAndAgentRestartAdoptsTheSameContainer()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var client = await _engine.ClientAsync(cts.Token);
        await BaseImages.EnsureBusyboxAsync(_engine, cts.Token);
        var id = await RunAsync(client, "t2", 32L * 1024 * 1024, cts.Token);

        // kill -9 of the service: the supervisor starts it again; the container (under conmon) keeps running.
        var pid = int.Parse(await File.ReadAllTextAsync(Path.Combine(_engine.Dir, "podman.pid"), cts.Token), System.Globalization.CultureInfo.InvariantCulture);
        Process.GetProcessById(pid).Kill();
        await WaitAsync(async () =>
        {
            var again = await _engine.ClientAsync(cts.Token);
            return (await again.Containers.InspectContainerAsync(id, cts.Token)).State.Running;
        }, cts.Token);

        // A second engine on the same state dir (the agent after kill -9) stops the orphaned service and finds the
        // same single container by its label, still running.
        var servicePid = int.Parse(await File.ReadAllTextAsync(Path.Combine(_engine.Dir, "podman.pid"), cts.Token), System.Globalization.CultureInfo.InvariantCulture);
        await _engine.AbandonAsync();
        await using var restarted = new ContainerEngine(_state, NullLogger<ContainerEngine>.Instance);
        var client2 = await restarted.ClientAsync(cts.Token);
        var found = await client2.Containers.ListContainersAsync(new ContainersListParameters
        {
            All = true,
            Filters = new Dictionary<string, IDictionary<string, bool>> { ["label"] = new Dictionary<string, bool> { ["kumo.instance-id=t2"] = true } },
        }, cts.Token);
        var only = Assert.Single(found);
        Assert.Equal(id, only.ID);
        Assert.Equal("running", only.State);
        Assert.False(ProcessAlive(pid));
        Assert.False(ProcessAlive(servicePid));
    }

    private static async Task<string> RunAsync(DockerClient client, string name, long memory, CancellationToken ct)
    {
        var created = await client.Containers.CreateContainerAsync(new CreateContainerParameters
        {
            Name = $"kumo-test-{name}-{Guid.NewGuid():n}"[..30],
            Image = BaseImages.BusyboxReference,
            Cmd = ["sleep", "600"],
            Labels = new Dictionary<string, string> { ["kumo.instance-id"] = name },
            HostConfig = new HostConfig { Memory = memory },
        }, ct);
        await client.Containers.StartContainerAsync(created.ID, new ContainerStartParameters(), ct);
        return created.ID;
    }

    /// <summary>The container's memory limit as the host's cgroup (v1 memory controller, or v2 memory.max) holds it.</summary>
    private static long ReadMemoryLimit(long pid)
    {
        foreach (var line in File.ReadAllLines($"/proc/{pid}/cgroup"))
        {
            var parts = line.Split(':', 3);
            if (parts[1].Split(',').Contains("memory"))
                return long.Parse(File.ReadAllText($"/sys/fs/cgroup/memory{parts[2]}/memory.limit_in_bytes").Trim(), System.Globalization.CultureInfo.InvariantCulture);
            if (parts[0] == "0" && File.Exists($"/sys/fs/cgroup{parts[2]}/memory.max"))
                return long.Parse(File.ReadAllText($"/sys/fs/cgroup{parts[2]}/memory.max").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        throw new InvalidOperationException($"no memory cgroup for pid {pid}");
    }

    private static bool ProcessAlive(int pid) => File.Exists($"/proc/{pid}/stat") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);

    private static async Task WaitAsync(Func<Task<bool>> condition, CancellationToken ct)
    {
        while (true)
        {
            try
            {
                if (await condition()) return;
            }
            catch (Exception e) when (e is HttpRequestException or IOException or DockerApiException or System.Net.Sockets.SocketException or InvalidOperationException)
            {
            }
            await Task.Delay(100, ct);
        }
    }
}
