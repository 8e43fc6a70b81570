using System.Text.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Kumo.IntegrationTests.Vms;

namespace Kumo.IntegrationTests.Cli;

/// <summary>The `kumo` command against a real kumod with real guests: the issue's tour, step by step.</summary>
[Trait("Category", "Slow")]
public sealed class CliEndToEndTests(LocalKumo fixture) : IClassFixture<LocalKumo>
{
    private Task<CliResult> Kumo(params string[] args) => fixture.Env.CliAsync(args);

    private static void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}");

    [Fact]
    public async Task Tour_CreateListShowStopStartRestartDestroyDelete()
    {
        var nodes = await Kumo("node", "list");
        Ok(nodes);
        Assert.Matches(@"local\s+ready\s+tcg", nodes.Out);
        var images = await Kumo("image", "list");
        Ok(images);
        Assert.Contains("tiny", images.Out);

        var create = await Kumo("vm", "create", "web1", "--image", "tiny", "--cpus", "1", "--memory", "128M", "--disk", "64M");
        Ok(create);
        Assert.Contains("waiting for guest readiness", create.Out);
        Assert.Contains("web1 is running", create.Out);

        var show = await Kumo("vm", "show", "web1", "-o", "json");
        Ok(show);
        var vm = JsonSerializer.Deserialize<Instance>(show.Out, ApiClient.Json)!;
        Assert.Equal(InstanceStates.Running, vm.State);
        Assert.Equal(128 * ByteSize.MiB, vm.MemoryBytes);

        Ok(await Kumo("vm", "stop", "web1"));
        var all = await Kumo("vm", "list");
        Assert.Matches(@"web1\s+stopped", all.Out);
        var running = await Kumo("vm", "list", "--running");
        Ok(running);
        Assert.DoesNotContain("web1", running.Out);

        Ok(await Kumo("vm", "start", "web1"));
        Ok(await Kumo("vm", "restart", "web1"));
        Assert.Matches(@"web1\s+running", (await Kumo("vm", "list", "--running")).Out);
        Ok(await Kumo("vm", "destroy", "web1"));
        Assert.Empty(Repo.QemuPids(Path.Combine(fixture.Env.LocalInstancesDir, vm.Id)));

        var yaml = await Kumo("vm", "list", "-o", "yaml");
        Ok(yaml);
        Assert.Contains("name: web1", yaml.Out);

        Ok(await Kumo("vm", "delete", "web1"));
        Assert.Null(await fixture.Env.Api.GetAsync("web1"));
        Assert.False(Directory.Exists(Path.Combine(fixture.Env.LocalInstancesDir, vm.Id)));
    }

    [Fact]
    public async Task DeleteWithForce_StopsARunningVmFirst()
    {
        Ok(await Kumo("vm", "create", "web2", "--memory", "128M", "--disk", "64M"));
        var refused = await Kumo("vm", "delete", "web2");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("--force", refused.Err);
        Ok(await Kumo("vm", "delete", "web2", "--force"));
        Assert.Null(await fixture.Env.Api.GetAsync("web2"));
    }

    [Fact]
    public async Task BadInput_GivesOneErrorLineAndNonZeroExit()
    {
        foreach (var args in new[]
        {
            new[] { "vm", "create", "../x" },
            ["vm", "create", "ok", "--memory", "0"],
            ["vm", "create", "ok", "--memory", "9999T"],
            ["vm", "create", "ok", "--image", "nope"],
            ["vm", "create", "ok", "--node", "nowhere"],
            ["vm", "show", "missing"],
        })
        {
            var r = await Kumo(args);
            Assert.True(r.ExitCode == 1, $"{string.Join(' ', args)}: exit {r.ExitCode} {r.Err}");
            Assert.StartsWith("error: ", r.Err);
        }
        Assert.Null(await fixture.Env.Api.GetAsync("ok"));
    }

    [Fact]
    public async Task Create_RidesOutAKumodCrashWhileWaiting()
    {
        var env = fixture.Env;
        var cli = Kumo("vm", "create", "phoenix", "--memory", "128M", "--disk", "64M");
        await ApiClient.EventuallyAsync(() => env.Api.GetAsync("phoenix"), i => i is not null, TimeSpan.FromSeconds(30), "phoenix stored");
        env.Server!.Crash();
        await env.StartServerAsync();
        var result = await cli;
        Ok(result);
        Assert.Contains("phoenix is running", result.Out);
        var id = (await env.Api.GetAsync("phoenix"))!.Id;
        Assert.Single(Repo.QemuPids(Path.Combine(env.LocalInstancesDir, id)));
        Ok(await Kumo("vm", "delete", "phoenix", "--force"));
    }

    [Fact]
    public async Task Unreachable_Exits2WithAHint()
    {
        var r = await CliProcess.RunAsync("http://127.0.0.1:1", "vm", "list");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("cannot reach kumod", r.Err);
    }

    [Fact]
    public async Task Backup_WhileRunning_ProducesARestorableCopy()
    {
        var file = Path.Combine(fixture.Env.StateDir, "backup-test.db");
        Ok(await Kumo("vm", "create", "bk1", "--memory", "128M", "--disk", "64M", "--stopped"));
        Ok(await Kumo("admin", "backup", file));
        Assert.True(new FileInfo(file).Length > 0);
        Ok(await Kumo("vm", "delete", "bk1"));
        Assert.Null(await fixture.Env.Api.GetAsync("bk1"));
        Ok(await Kumo("admin", "restore", file));
        var restored = await fixture.Env.Api.GetAsync("bk1");
        Assert.NotNull(restored);
        // The agent re-creates what the restored database says it should have.
        await ApiClient.EventuallyAsync(() => fixture.Env.Api.GetAsync("bk1"), i => i?.State == InstanceStates.Stopped,
            TimeSpan.FromSeconds(30), "bk1 stopped after restore");
        Ok(await Kumo("vm", "delete", "bk1"));
    }
}
