using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Vms;

/// <summary>kumod without a local agent, two kumo-agent processes (n1, n2) and a one-port migration pool.</summary>
public sealed class MigrationNodes : IAsyncLifetime
{
    /// <summary>The whole migration pool: one free port, so no fixed port another run might hold is needed.</summary>
    public int Port { get; } = DaemonProcess.FreePort();

    public KumoEnvironment Env { get; private set; } = null!;

    /// <summary>The agents send at most 16 MiB/s, so a migration of the tiny guest lasts seconds: long enough to kill something in the middle.</summary>
    public static readonly string[] AgentArgs = ["--migration-bandwidth", "16M"];

    public DaemonProcess Agent1 { get; set; } = null!;

    public async Task InitializeAsync()
    {
        Env = await KumoEnvironment.StartAsync(false, "--migration-ports", $"{Port}-{Port}");
        Agent1 = await Env.StartAgentAsync("n1", 2, "2G", AgentArgs);
        await Env.StartAgentAsync("n2", 2, "2G", AgentArgs);
    }

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

/// <summary>Live migration of real TCG guests between two agents on this machine.</summary>
[Trait("Category", "Slow")]
public sealed class MigrationTests(MigrationNodes fixture, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<MigrationNodes>, IAsyncLifetime
{
    private static readonly TimeSpan Answer = TimeSpan.FromSeconds(30);

    private KumoEnvironment Env => fixture.Env;

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>Every test starts from two empty nodes.</summary>
    public async Task DisposeAsync()
    {
        foreach (var i in await Env.Api.ListAsync()) await Env.DoAsync(i.Name, "force-delete");
    }

    private string SerialSocket(string node, string id) => Path.Combine(Env.AgentStateDir(node), "instances", id, "serial.sock");

    private string InstanceDir(string node, string id) => Path.Combine(Env.AgentStateDir(node), "instances", id);

    private async Task<Instance> RunningOnAsync(string name, string node)
    {
        var op = await Env.CreateAsync(name, new { node });
        Assert.True(op.Status == OperationStatuses.Succeeded, $"{op.Error}\n{Env.Diagnostics()}");
        return (await Env.Api.GetAsync(name))!;
    }

    private async Task<(HttpStatusCode Status, Operation? Operation, Problem? Problem)> MigrateAsync(string name, object body)
    {
        using var r = await Env.Api.Http.PostAsJsonAsync($"/api/v1/instances/{name}/migrate", body);
        if (r.IsSuccessStatusCode) return (r.StatusCode, await r.Content.ReadFromJsonAsync<Operation>(ApiClient.Json), null);
        return (r.StatusCode, null, await r.Content.ReadFromJsonAsync<Problem>(ApiClient.Json));
    }

    [Fact]
    public async Task Migrate_RunningGuest_MovesToTheTargetAndKeepsRunningWithoutReboot()
    {
        var vm = await RunningOnAsync("mig1", "n1");
        // The boot id changes with every boot: the same one afterwards means the same kernel kept running.
        var before = await SerialConsole.RunAsync(SerialSocket("n1", vm.Id),
            "echo data-$$ > /data/before; sync; cat /proc/sys/kernel/random/boot_id /proc/uptime /data/before", Answer);
        var (bootId, uptime, data) = Parse(before);

        var cli = await Env.CliAsync("vm", "migrate", "mig1", "--to", "n2");

        Assert.True(cli.ExitCode == 0, $"{cli.Err}\n{Env.Diagnostics()}");
        // The CLI's progress lines and QEMU's timings, for the record.
        output.WriteLine(cli.Out + cli.Err);
        Assert.Contains("migrated from n1 to n2", cli.Out);
        var moved = await ApiClient.EventuallyAsync(() => Env.Api.GetAsync("mig1"), i => i!.Node == "n2" && i.State == InstanceStates.Running,
            TimeSpan.FromSeconds(60), "mig1 running on n2");
        Assert.Equal(vm.Id, moved!.Id);
        // The source's QEMU quit and the source forgot the instance; the target runs exactly one QEMU.
        await KumoEnvironment.WaitUntilAsync(() => Task.FromResult(Repo.QemuPids(Env.AgentStateDir("n1")).Count == 0 && !Directory.Exists(InstanceDir("n1", vm.Id))),
            TimeSpan.FromSeconds(30), "the source's QEMU and directory to be gone");
        Assert.Single(Repo.QemuPids(Env.AgentStateDir("n2")));

        var after = await SerialConsole.RunAsync(SerialSocket("n2", vm.Id), "cat /proc/sys/kernel/random/boot_id /proc/uptime /data/before", Answer);
        var (bootIdAfter, uptimeAfter, dataAfter) = Parse(after);
        Assert.Equal(bootId, bootIdAfter);
        Assert.True(uptimeAfter > uptime, $"uptime went from {uptime} to {uptimeAfter}");
        // The disk overlay came along: a file written on the source is there.
        Assert.Equal(data, dataAfter);
        // The agent on n2 has watched the console since the guest arrived: no boot banner in its log.
        Assert.DoesNotContain("Linux version", await File.ReadAllTextAsync(Path.Combine(InstanceDir("n2", vm.Id), "console.log")));

        // The moved VM is an ordinary VM of n2: it stops there, and can go back.
        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("mig1", "restart")).Status);
        var (_, back, _) = await MigrateAsync("mig1", new { node = "n1" });
        Assert.Equal(OperationStatuses.Succeeded, (await Env.Api.WaitAsync(back!)).Status);
        Assert.Equal("n1", (await Env.Api.GetAsync("mig1"))!.Node);
    }

    private static (string BootId, double Uptime, string Data) Parse(string output)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var boot = lines.First(l => l.Length == 36 && l.Count(c => c == '-') == 4);
        var uptime = lines.Select(l => l.Split(' ')).First(p => p.Length == 2 && double.TryParse(p[0], System.Globalization.CultureInfo.InvariantCulture, out _))[0];
        return (boot, double.Parse(uptime, System.Globalization.CultureInfo.InvariantCulture), lines.First(l => l.StartsWith("data-", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Migrate_BadRequests_AreRefusedAndNothingMoves()
    {
        await RunningOnAsync("mig2", "n1");
        await Env.CreateAsync("stopped2", new { node = "n1", stopped = true });

        var (status, _, problem) = await MigrateAsync("mig2", new { node = "nowhere" });
        Assert.Equal((HttpStatusCode.BadRequest, ProblemTypes.Validation), (status, problem!.Type));
        Assert.Contains("nowhere", problem.Detail);

        (status, _, problem) = await MigrateAsync("mig2", new { node = "n1" });
        Assert.Equal((HttpStatusCode.BadRequest, ProblemTypes.Validation), (status, problem!.Type));
        Assert.Contains("already runs on node 'n1'", problem.Detail);

        (status, _, problem) = await MigrateAsync("mig2", new { });
        Assert.Equal((HttpStatusCode.BadRequest, ProblemTypes.Validation), (status, problem!.Type));

        (status, _, problem) = await MigrateAsync("stopped2", new { node = "n2" });
        Assert.Equal((HttpStatusCode.Conflict, ProblemTypes.InvalidState), (status, problem!.Type));
        Assert.Contains("only a running VM", problem.Detail);

        (status, _, problem) = await MigrateAsync("ghost", new { node = "n2" });
        Assert.Equal(HttpStatusCode.NotFound, status);

        // n2 is full: a stopped VM holds all of its memory.
        await Env.CreateAsync("filler", new { node = "n2", stopped = true, memory = "2G" });
        (status, _, problem) = await MigrateAsync("mig2", new { node = "n2" });
        Assert.Equal((HttpStatusCode.Conflict, ProblemTypes.NoCapacity), (status, problem!.Type));
        Assert.Contains("memory", problem.Detail);

        // Not an admin: refused by the policy, even for the VM's owner.
        var alice = await Env.AddUserAsync("alice");
        var cli = await Env.CliAsAsync(alice, "vm", "migrate", "mig2", "--to", "n2");
        Assert.Equal(1, cli.ExitCode);
        Assert.StartsWith("error:", cli.Err.Trim());
        Assert.Single(cli.Err.Trim().Split('\n'));

        // The CLI says why in one line and fails.
        cli = await Env.CliAsync("vm", "migrate", "mig2", "--to", "nowhere");
        Assert.Equal(1, cli.ExitCode);
        Assert.Contains("nowhere", cli.Err);

        Assert.Equal("n1", (await Env.Api.GetAsync("mig2"))!.Node);
        Assert.Single(Repo.QemuPids(Env.AgentStateDir("n1")));
        Assert.Empty(Repo.QemuPids(Env.AgentStateDir("n2")));
    }

    [Fact]
    public async Task Migrate_WhenTheTargetCannotListen_FailsAndTheVmKeepsRunningOnTheSource()
    {
        var vm = await RunningOnAsync("mig3", "n1");
        var pid = Assert.Single(Repo.QemuPids(Env.AgentStateDir("n1")));
        // Someone else holds the pool's only port: the target's QEMU cannot start listening.
        using var squatter = new TcpListener(IPAddress.Loopback, fixture.Port);
        squatter.Start();

        var cli = await Env.CliAsync("vm", "migrate", "mig3", "--to", "n2");

        Assert.Equal(1, cli.ExitCode);
        Assert.Contains("migration failed", cli.Err);
        Assert.Contains("keeps running on n1", cli.Err);
        var after = (await Env.Api.GetAsync("mig3"))!;
        Assert.Equal(("n1", InstanceStates.Running), (after.Node, after.State));
        Assert.Equal([pid], Repo.QemuPids(Env.AgentStateDir("n1")));
        await KumoEnvironment.WaitUntilAsync(() => Task.FromResult(Repo.QemuPids(Env.AgentStateDir("n2")).Count == 0 && !Directory.Exists(InstanceDir("n2", vm.Id))),
            TimeSpan.FromSeconds(30), "the target's leftovers to be removed");
        var answer = await SerialConsole.RunAsync(SerialSocket("n1", vm.Id), "echo still-$((40 + 2))", Answer);
        Assert.Contains("still-42", answer);

        // Once the port is free again the same VM migrates.
        squatter.Stop();
        var (_, op, _) = await MigrateAsync("mig3", new { node = "n2" });
        Assert.Equal(OperationStatuses.Succeeded, (await Env.Api.WaitAsync(op!)).Status);
        Assert.Equal("n2", (await Env.Api.GetAsync("mig3"))!.Node);
    }

    /// <summary>Starts migrating <paramref name="name"/> to n2 and returns once the source reports bytes sent.</summary>
    private async Task<Operation> MigrateUntilHalfwayAsync(string name)
    {
        var (status, op, problem) = await MigrateAsync(name, new { node = "n2" });
        Assert.True(status == HttpStatusCode.Accepted, $"{status} {problem?.Detail}");
        await ApiClient.EventuallyAsync(() => Env.Api.Http.GetFromJsonAsync<Operation>($"/api/v1/operations/{op!.Id}", ApiClient.Json),
            o => o!.Message?.Contains(" sent", StringComparison.Ordinal) == true || OperationStatuses.IsFinal(o.Status), TimeSpan.FromSeconds(60), "bytes sent");
        return op!;
    }

    private async Task AssertOneCopyOnN2Async(string name, string id, string bootId)
    {
        var moved = await ApiClient.EventuallyAsync(() => Env.Api.GetAsync(name), i => i!.Node == "n2" && i.State == InstanceStates.Running,
            TimeSpan.FromSeconds(90), $"{name} running on n2");
        Assert.Equal(id, moved!.Id);
        await KumoEnvironment.WaitUntilAsync(() => Task.FromResult(Repo.QemuPids(Env.AgentStateDir("n1")).Count == 0 && !Directory.Exists(InstanceDir("n1", id))),
            TimeSpan.FromSeconds(60), "the source's QEMU and directory to be gone");
        Assert.Single(Repo.QemuPids(Env.AgentStateDir("n2")));
        var after = await SerialConsole.RunAsync(SerialSocket("n2", id), "cat /proc/sys/kernel/random/boot_id /proc/uptime; echo data-x", Answer);
        Assert.Equal(bootId, Parse(after).BootId);
    }

    [Fact]
    public async Task Migrate_KumodKilledMidway_RestartedKumodMovesTheVmAndOneCopyRuns()
    {
        var vm = await RunningOnAsync("mig4", "n1");
        var bootId = Parse(await SerialConsole.RunAsync(SerialSocket("n1", vm.Id), "cat /proc/sys/kernel/random/boot_id /proc/uptime; echo data-x", Answer)).BootId;
        var op = await MigrateUntilHalfwayAsync("mig4");

        Env.Server!.Crash();
        // QEMU carries on without kumod; the agents report the outcome once kumod is back.
        await Env.StartServerAsync();

        var final = await Env.Api.WaitAsync(op);
        Assert.True(final.Status == OperationStatuses.Succeeded, $"{final.Status}: {final.Error} ({final.Message})\n{Env.Diagnostics()}");
        await AssertOneCopyOnN2Async("mig4", vm.Id, bootId);
    }

    [Fact]
    public async Task Migrate_SourceAgentKilledMidway_RestartedAgentReportsTheOutcomeAndOneCopyRuns()
    {
        var vm = await RunningOnAsync("mig5", "n1");
        var bootId = Parse(await SerialConsole.RunAsync(SerialSocket("n1", vm.Id), "cat /proc/sys/kernel/random/boot_id /proc/uptime; echo data-x", Answer)).BootId;
        var op = await MigrateUntilHalfwayAsync("mig5");

        fixture.Agent1.Crash();
        fixture.Agent1 = await Env.StartAgentAsync("n1", 2, "2G", MigrationNodes.AgentArgs);

        Assert.Equal(OperationStatuses.Succeeded, (await Env.Api.WaitAsync(op)).Status);
        await AssertOneCopyOnN2Async("mig5", vm.Id, bootId);
    }
}
