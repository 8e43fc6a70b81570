using System.Net.Http.Json;
using Kumo.Agent.Containers;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kumo.IntegrationTests.Containers;

/// <summary>An all-in-one kumod with room for many containers, and two students, alice and bob.</summary>
public sealed class ContainerKumo : IAsyncLifetime
{
    public KumoEnvironment Env { get; private set; } = null!;
    public string Alice { get; private set; } = "";
    public string Bob { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Env = await KumoEnvironment.StartAsync(true, "--capacity-cpus", "32");
        Alice = await Env.AddUserAsync("alice");
        Bob = await Env.AddUserAsync("bob");
    }

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

/// <summary>
/// Containers as Kumo instances, end to end: the real CLI, a real kumod with its agent, real podman (runc) and the
/// busybox image each node builds itself.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ContainerInstanceTests(ContainerKumo fixture) : IClassFixture<ContainerKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private Task<CliResult> Alice(params string[] args) => Env.CliAsAsync(fixture.Alice, args);

    private Task<CliResult> Bob(params string[] args) => Env.CliAsAsync(fixture.Bob, args);

    private void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}\n{Env.Diagnostics()}");

    private static void Refused(CliResult r, string expected)
    {
        Assert.True(r.ExitCode != 0, $"expected a refusal, got exit 0: {r.Out}");
        Assert.Contains(expected, r.Err, StringComparison.Ordinal);
    }

    private ContainerEngine Engine() => new(Path.Combine(Env.StateDir, "agent"), NullLogger<ContainerEngine>.Instance);

    /// <summary>Engine-level containers of one instance, read with the podman CLI against the agent's storage.</summary>
    private async Task<List<(string Id, string Name, string State)>> EngineContainersAsync(string instanceId)
    {
        await using var engine = Engine();
        var r = await engine.PodmanAsync(["ps", "-a", "--filter", $"label={ContainerReconciler.InstanceLabel}={instanceId}", "--format", "{{.ID}} {{.Names}} {{.State}}"], CancellationToken.None);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')).Select(p => (p[0], p[1], p[2] == "Up" ? "running" : p[2].ToLowerInvariant())).ToList();
    }

    private async Task<long> PidAsync(string engineName)
    {
        await using var engine = Engine();
        var r = await engine.PodmanAsync(["inspect", "--format", "{{.State.Pid}}", engineName], CancellationToken.None);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return long.Parse(r.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private async Task<Instance> AsAsync(string token, string name)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/instances/{name}");
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        using var response = await Env.Api.Http.SendAsync(request);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<Instance>(ApiClient.Json))!;
    }

    private async Task<Instance> EventuallyAsync(string token, string name, Func<Instance, bool> condition, string what) =>
        await ApiClient.EventuallyAsync(() => AsAsync(token, name), condition, TimeSpan.FromSeconds(90), what);

    [Fact]
    public async Task Run_ListStopStartRm_DrivesOneRealContainerNamedAfterItsOwner()
    {
        var token = Guid.NewGuid().ToString("n");
        var run = await Alice("ct", "run", "web", "-p", "8080", "-m", "64M", "-e", $"TOKEN={token}",
            "--", "sh", "-c", "mkdir -p /www && echo $TOKEN > /www/index.html && exec httpd -f -p 8080 -h /www");
        Ok(run);
        Assert.Contains("container web is running on local", run.Out);

        var web = await AsAsync(fixture.Alice, "web");
        Assert.Equal(InstanceTypes.Container, web.Type);
        Assert.Equal(64 * ByteSize.MiB, web.MemoryBytes);
        var only = Assert.Single(await EngineContainersAsync(web.Id));
        Assert.Equal("alice-web", only.Name);
        Assert.Equal("running", only.State);

        // The published port is on the node's loopback, at the host port kumod allocated, serving what the test put there.
        var port = Assert.Single(web.Container!.Ports);
        Assert.Equal(8080, port.ContainerPort);
        Assert.Equal("127.0.0.1", port.HostIp);
        Assert.Contains($"http://127.0.0.1:{port.HostPort}/", run.Out);
        using var http = new HttpClient();
        var body = await ApiClient.EventuallyAsync(async () =>
        {
            try
            {
                return await http.GetStringAsync($"http://127.0.0.1:{port.HostPort}/");
            }
            catch (HttpRequestException)
            {
                return "";
            }
        }, b => b.Length > 0, TimeSpan.FromSeconds(30), "httpd to answer on the published port");
        Assert.Equal(token + "\n", body);

        var list = await Alice("ct", "list");
        Ok(list);
        Assert.Contains("web", list.Out);
        Assert.Contains("running", list.Out);

        Ok(await Alice("ct", "stop", "web"));
        Assert.Equal("exited", Assert.Single(await EngineContainersAsync(web.Id)).State);
        var stoppedList = await Alice("ct", "list");
        Assert.Contains("stopped", stoppedList.Out);

        Ok(await Alice("ct", "start", "web"));
        var restarted = Assert.Single(await EngineContainersAsync(web.Id));
        Assert.Equal(only.Id, restarted.Id);
        Assert.Equal("running", restarted.State);

        Refused(await Alice("ct", "rm", "web"), "stop it first or delete with --force");
        Ok(await Alice("ct", "rm", "web", "--force"));
        Assert.Empty(await EngineContainersAsync(web.Id));
        Refused(await Alice("ct", "show", "web"), "does not exist");
    }

    [Fact]
    public async Task Run_WithoutMemory_CgroupOnTheHostCarriesTheDefaultLimit()
    {
        Ok(await Alice("ct", "run", "nomem", "--", "sleep", "600"));
        var pid = await PidAsync("alice-nomem");
        Assert.Equal(512 * ByteSize.MiB, ReadMemoryLimit(pid));
        Assert.Equal(512 * ByteSize.MiB, (await AsAsync(fixture.Alice, "nomem")).MemoryBytes);
        Ok(await Alice("ct", "rm", "nomem", "--force"));
    }

    [Fact]
    public async Task ProcessOverItsMemoryLimit_IsOomKilled_AndReportedAsSuch()
    {
        // Doubling a shell string grows without bound; 32 MiB runs out in a few rounds.
        var post = await Alice("ct", "run", "hog", "-m", "32M", "--no-wait", "--", "sh", "-c", "sleep 1; a=xxxxxxxx; while true; do a=$a$a; done");
        Ok(post);
        var hog = await EventuallyAsync(fixture.Alice, "hog", i => i.State == InstanceStates.Stopped, "the hog to be stopped");
        Assert.StartsWith("OOM-killed", hog.StatusMessage);
        Assert.Contains("limit of 32M", hog.StatusMessage);
        var show = await Alice("ct", "show", "hog", "-o", "json");
        Assert.Contains("OOM-killed", show.Out);
        Ok(await Alice("ct", "rm", "hog"));
    }

    [Fact]
    public async Task PolicyRefusals_AreClearAndCreateNothing()
    {
        Refused(await Alice("ct", "run", "p1", "--privileged", "--", "true"), "privileged containers are not allowed");
        Refused(await Alice("ct", "run", "p2", "--network", "host", "--", "true"), "network 'host' is not allowed");
        Refused(await Alice("ct", "run", "p3", "--pid", "host", "--", "true"), "pid 'host' is not allowed");
        Refused(await Alice("ct", "run", "p4", "--device", "/dev/kvm", "--", "true"), "device mounts are not allowed");
        Refused(await Alice("ct", "run", "p5", "--cap-add", "SYS_ADMIN", "--", "true"), "added capabilities are not allowed");
        Refused(await Alice("ct", "run", "p6", "-v", "/etc:/host-etc", "--", "true"), "bind mount of '/etc' is not allowed");
        Refused(await Alice("ct", "run", "p7", "-v", "data/../../bob:/x", "--", "true"), "'..' is not allowed");
        Refused(await Alice("ct", "run", "p8", "-v", "~/.kumo-data/bob/notes:/x", "--", "true"), "is not allowed");
        var list = await Alice("ct", "list", "-o", "json");
        Ok(list);
        for (var i = 1; i <= 8; i++) Assert.DoesNotContain($"\"p{i}\"", list.Out);

        // The API says the same with a stable problem type.
        using var response = await Env.Api.Http.PostAsJsonAsync("/api/v1/instances", new { name = "p9", type = "container", privileged = true });
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<Problem>(ApiClient.Json);
        Assert.Equal(ProblemTypes.PolicyRefused, problem!.Type);
        Assert.Contains("privileged", problem.Errors!.Keys);
    }

    [Fact]
    public async Task SymlinkOutOfTheStorageDir_IsRefusedOnTheNode_AndNoContainerIsMade()
    {
        var aliceDir = Path.Combine(Env.UserDataDir, "alice");
        Directory.CreateDirectory(aliceDir);
        File.CreateSymbolicLink(Path.Combine(aliceDir, "escape"), "/etc");
        var r = await Alice("ct", "run", "link1", "-v", "escape:/x", "--", "sleep", "600");
        Assert.NotEqual(0, r.ExitCode);
        var link = await AsAsync(fixture.Alice, "link1");
        Assert.Equal(InstanceStates.Error, link.State);
        Assert.Contains("outside alice's storage dir", link.StatusMessage);
        Assert.Empty(await EngineContainersAsync(link.Id));

        // Inside the storage dir it works, and the container writes where its owner can read it on the node.
        Ok(await Alice("ct", "run", "vol1", "-v", "work/out:/out", "--", "sh", "-c", "echo hello > /out/f && sleep 600"));
        await ApiClient.EventuallyAsync(() => Task.FromResult(File.Exists(Path.Combine(aliceDir, "work", "out", "f"))), x => x, TimeSpan.FromSeconds(30), "the file to appear");
        Ok(await Alice("ct", "rm", "vol1", "--force"));
        Ok(await Alice("ct", "rm", "link1", "--force"));
    }

    [Fact]
    public async Task AnotherUsersContainer_IsNotVisible_AndNamesDoNotCollide()
    {
        Ok(await Alice("ct", "run", "shared", "--", "sleep", "600"));
        Refused(await Bob("ct", "show", "shared"), "does not exist");
        Refused(await Bob("ct", "stop", "shared"), "does not exist");
        Refused(await Bob("ct", "rm", "shared", "--force"), "does not exist");
        Ok(await Bob("ct", "run", "shared", "--", "sleep", "600"));
        var a = await AsAsync(fixture.Alice, "shared");
        var b = await AsAsync(fixture.Bob, "shared");
        Assert.Equal("alice-shared", Assert.Single(await EngineContainersAsync(a.Id)).Name);
        Assert.Equal("bob-shared", Assert.Single(await EngineContainersAsync(b.Id)).Name);
        Ok(await Alice("ct", "rm", "shared", "--force"));
        Ok(await Bob("ct", "rm", "shared", "--force"));
    }

    [Fact]
    public async Task NinthContainer_IsRefusedWithTheQuotaNamed()
    {
        var carol = await Env.AddUserAsync("carol");
        for (var i = 1; i <= 8; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/instances")
            {
                Content = JsonContent.Create(new { name = $"q{i}", type = "container", memory = "16M", stopped = true }),
            };
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", carol);
            using var response = await Env.Api.Http.SendAsync(request);
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        }
        var ninth = await Env.CliAsAsync(carol, "ct", "run", "q9", "-m", "16M", "--", "true");
        Refused(ninth, "containers: 8 containers in use of 8 (user carol)");
        var list = await Env.CliAsAsync(carol, "ct", "list");
        Assert.DoesNotContain("q9", list.Out);
        Assert.Contains("q8", list.Out);
    }

    [Fact]
    public async Task KumodWithItsAgentKilled_ContainerKeepsRunning_AndIsAdoptedWithoutADuplicate()
    {
        Ok(await Alice("ct", "run", "keep", "--", "sleep", "600"));
        var keep = await AsAsync(fixture.Alice, "keep");
        var before = Assert.Single(await EngineContainersAsync(keep.Id));
        var pid = await PidAsync("alice-keep");

        Env.Server!.Crash();
        Assert.True(File.Exists($"/proc/{pid}/stat"), "the container's process must outlive the agent");
        await Env.StartServerAsync();

        // The restarted agent finds the container by its label: the same one, same process, nothing created twice.
        await EventuallyAsync(fixture.Alice, "keep", i => i.State == InstanceStates.Running, "keep to be running after the restart");
        var after = Assert.Single(await EngineContainersAsync(keep.Id));
        Assert.Equal(before.Id, after.Id);
        Assert.Equal(pid, await PidAsync("alice-keep"));
        // And it is under the new agent's control.
        Ok(await Alice("ct", "stop", "keep"));
        Assert.Equal("exited", Assert.Single(await EngineContainersAsync(keep.Id)).State);
        Ok(await Alice("ct", "rm", "keep"));
        Assert.Empty(await EngineContainersAsync(keep.Id));
    }

    [Fact]
    public async Task ImageList_ByType_ShowsTheBusyboxContainerImage()
    {
        var r = await Alice("image", "list", "--type", "container");
        Ok(r);
        Assert.Contains("busybox", r.Out);
        Assert.DoesNotContain("tiny", r.Out);
    }

    [Fact]
    public async Task Run_WithFractionalCpus_SetsACfsQuotaOnTheHost_AndCountsOneVcpu()
    {
        var run = await Alice("ct", "run", "half", "--cpus", "0.5", "--", "sleep", "600");
        Ok(run);
        var pid = await PidAsync("alice-half");
        var (quota, period) = ReadCpuQuota(pid);
        Assert.Equal(period / 2, quota);
        var half = await AsAsync(fixture.Alice, "half");
        Assert.Equal(0.5, half.Container!.CpuLimit);
        Assert.Equal(1, half.Cpus);
        var show = await Alice("ct", "show", "half");
        Ok(show);
        Assert.Contains("0.5 (counted as 1)", show.Out);

        Refused(await Alice("ct", "run", "nocpu", "--cpus", "0", "--", "true"), "is not a positive number of CPUs");
        Refused(await Alice("ct", "run", "tiny", "--cpus", "0.001", "--", "true"), "cpuLimit must be between 0.01 and 64");
        using var vm = await Env.Api.Http.PostAsJsonAsync("/api/v1/instances", new { name = "halfvm", cpuLimit = 0.5 });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, vm.StatusCode);
        Assert.Contains("cpuLimit", (await vm.Content.ReadFromJsonAsync<Problem>(ApiClient.Json))!.Errors!.Keys);
        Ok(await Alice("ct", "rm", "half", "--force"));
    }

    /// <summary>The CFS quota and period of the container's cpu cgroup (v1 cpu controller, or v2 cpu.max), in microseconds.</summary>
    internal static (long Quota, long Period) ReadCpuQuota(long pid)
    {
        foreach (var line in File.ReadAllLines($"/proc/{pid}/cgroup"))
        {
            var parts = line.Split(':', 3);
            if (parts[1].Split(',').Contains("cpu"))
            {
                var dir = Directory.Exists($"/sys/fs/cgroup/cpu{parts[2]}") ? $"/sys/fs/cgroup/cpu{parts[2]}" : $"/sys/fs/cgroup/cpu,cpuacct{parts[2]}";
                return (long.Parse(File.ReadAllText($"{dir}/cpu.cfs_quota_us").Trim(), System.Globalization.CultureInfo.InvariantCulture),
                    long.Parse(File.ReadAllText($"{dir}/cpu.cfs_period_us").Trim(), System.Globalization.CultureInfo.InvariantCulture));
            }
            if (parts[0] == "0" && File.Exists($"/sys/fs/cgroup{parts[2]}/cpu.max"))
            {
                var max = File.ReadAllText($"/sys/fs/cgroup{parts[2]}/cpu.max").Trim().Split(' ');
                return (long.Parse(max[0], System.Globalization.CultureInfo.InvariantCulture), long.Parse(max[1], System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        throw new InvalidOperationException($"no cpu cgroup for pid {pid}");
    }

    /// <summary>The container's memory limit as the host's cgroup (v1 memory controller, or v2 memory.max) holds it.</summary>
    internal static long ReadMemoryLimit(long pid)
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
}
