using System.Diagnostics;
using System.Net;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Kumo.IntegrationTests.Vms;

/// <summary>kumod, one agent with --libvirt, and the test's own private libvirtd (see <see cref="PrivateLibvirtd"/>).</summary>
public sealed class LibvirtKumo : IAsyncLifetime
{
    public PrivateLibvirtd Libvirtd { get; private set; } = null!;
    public KumoEnvironment Env { get; private set; } = null!;
    public DaemonProcess Agent { get; set; } = null!;

    public async Task InitializeAsync()
    {
        Libvirtd = await PrivateLibvirtd.StartAsync();
        Env = await KumoEnvironment.StartAsync(allInOne: false);
        Agent = await StartAgentAsync();
    }

    public Task<DaemonProcess> StartAgentAsync() => Env.StartAgentAsync("lv", 2, "2G", "--libvirt", Libvirtd.Uri);

    public async Task DisposeAsync()
    {
        await Env.DisposeAsync();
        await Libvirtd.DisposeAsync();
    }
}

/// <summary>The VM lifecycle through a real libvirtd (domain type qemu, TCG) from an admin's template, with the tiny image.</summary>
[Trait("Category", "Slow")]
public sealed class LibvirtDriverTests(LibvirtKumo fixture, ITestOutputHelper output) : IClassFixture<LibvirtKumo>
{
    /// <summary>A user-mode NIC and a virtio qcow2 disk, fixed; the tiny image boots its kernel, which Kumo adds.</summary>
    private const string Small =
        """
        <domain type='qemu'>
          <name>{{name}}</name>
          <memory unit='KiB'>{{memory_kib}}</memory>
          <vcpu>{{vcpu}}</vcpu>
          <os><type arch='x86_64' machine='q35'>hvm</type></os>
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source file='{{image}}'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <interface type='user'><model type='virtio'/></interface>
          </devices>
        </domain>
        """;

    private KumoEnvironment Env => fixture.Env;
    private PrivateLibvirtd Libvirtd => fixture.Libvirtd;

    private async Task EnsureTemplateAsync()
    {
        if (await Env.Api.Http.GetAsync("/api/v1/templates/small") is { StatusCode: HttpStatusCode.OK }) return;
        var file = Path.Combine(Env.StateDir, "small.xml");
        await File.WriteAllTextAsync(file, Small);
        var added = await Env.CliAsync("template", "add", "small", "--file", file, "--description", "user-mode NIC, virtio disk");
        Assert.True(added.ExitCode == 0, added.Err);
    }

    private async Task<Instance> InstanceAsync(string name) => await Env.Api.GetAsync(name) ?? throw new InvalidOperationException(name + " missing");

    [Fact]
    public async Task TemplatedVm_CreateStopStartDelete_ThroughLibvirtd_AndListShowsItDefinedButStopped()
    {
        await EnsureTemplateAsync();

        var watch = Stopwatch.StartNew();
        var op = await Env.CreateAsync("lv1", new { template = "small", disk = (string?)null });
        var createToReady = watch.Elapsed;
        Assert.True(op.Status == OperationStatuses.Succeeded, $"{op.Error}\n{Env.Diagnostics()}\n{Libvirtd.Log}");
        var vm = await InstanceAsync("lv1");
        Assert.Equal(InstanceStates.Running, vm.State);
        Assert.Equal("small", vm.Template);
        var domain = $"kumo-{vm.Id}";
        Assert.Equal("running", (await Libvirtd.DomainsAsync())[domain]);
        // Kumo's label and the template's fixed parts are in the definition libvirt holds.
        var (_, xml, _) = await Libvirtd.VirshAsync("dumpxml", domain);
        Assert.Contains($"id=\"{vm.Id}\"", xml);
        Assert.Contains("<interface type='user'>", xml);
        Assert.Contains("kumo tiny: booted", await File.ReadAllTextAsync(Path.Combine(Env.AgentStateDir("lv"), "libvirt", vm.Id, "console.log")));

        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("lv1", "stop")).Status);
        Assert.Equal(InstanceStates.Stopped, (await InstanceAsync("lv1")).State);
        Assert.Equal("shut off", (await Libvirtd.DomainsAsync())[domain]);
        var listed = await Env.CliAsync("vm", "list");
        Assert.Matches(@"lv1\s+stopped", listed.Out);

        // Created stopped: defined in libvirt (listed by `virsh list --all`), never started.
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("lv2", new { template = "small", disk = (string?)null, stopped = true })).Status);
        var lv2 = await InstanceAsync("lv2");
        Assert.Equal(InstanceStates.Stopped, lv2.State);
        Assert.Equal("shut off", (await Libvirtd.DomainsAsync())[$"kumo-{lv2.Id}"]);

        watch.Restart();
        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("lv1", "start")).Status);
        var startToReady = watch.Elapsed;
        Assert.Equal("running", (await Libvirtd.DomainsAsync())[domain]);

        // The same agent's direct QEMU driver, for comparison.
        watch.Restart();
        var direct = await Env.CreateAsync("q1", new { });
        var directCreateToReady = watch.Elapsed;
        Assert.Equal(OperationStatuses.Succeeded, direct.Status);
        output.WriteLine($"create-to-ready: libvirt {createToReady.TotalMilliseconds:0} ms, direct qemu {directCreateToReady.TotalMilliseconds:0} ms; libvirt start-to-ready {startToReady.TotalMilliseconds:0} ms");

        // lv2 is stopped; the running ones go with --force, which powers them off first.
        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("lv2", "delete")).Status);
        foreach (var name in new[] { "lv1", "q1" })
            Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync(name, "force-delete")).Status);
        Assert.DoesNotContain((await Libvirtd.DomainsAsync()).Keys, d => d.StartsWith("kumo-", StringComparison.Ordinal));
        Assert.False(Directory.Exists(Path.Combine(Env.AgentStateDir("lv"), "libvirt", vm.Id)));
    }

    [Fact]
    public async Task AgentKilledWhileTemplatedVmRuns_RestartedAgentAdoptsTheDomain_NeverDefinesOrStartsItAgain()
    {
        await EnsureTemplateAsync();
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("lv3", new { template = "small", disk = (string?)null })).Status);
        var vm = await InstanceAsync("lv3");
        var pids = Repo.QemuPids($"guest=kumo-{vm.Id},");
        Assert.Single(pids);

        fixture.Agent.Crash();
        Assert.Equal(pids, Repo.QemuPids($"guest=kumo-{vm.Id},"));
        fixture.Agent = await fixture.StartAgentAsync();
        var adopted = await ApiClient.EventuallyAsync(() => Env.Api.GetAsync("lv3"), i => i?.State == InstanceStates.Running && i.StatusMessage == "guest ready",
            TimeSpan.FromSeconds(60), "lv3 running under the restarted agent");

        Assert.Equal(pids, Repo.QemuPids($"guest=kumo-{vm.Id},"));
        Assert.Single((await Libvirtd.DomainsAsync()).Keys, d => d.StartsWith("kumo-", StringComparison.Ordinal));
        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("lv3", "force-delete")).Status);
        Assert.Empty(Repo.QemuPids($"guest=kumo-{vm.Id},"));
        Assert.NotNull(adopted);
    }

    [Theory]
    [InlineData("network", "lab-net", null)]
    [InlineData("templateOverrides", "disk.bus", "ide")]
    [InlineData("templateOverrides", "network", "default")]
    [InlineData("disk", "10G", null)]
    public async Task TemplatedVm_UserOverridingNetworkOrDisk_IsRefusedWithTemplateOverride(string field, string value, string? overrideValue)
    {
        await EnsureTemplateAsync();
        var body = new Dictionary<string, object?> { ["name"] = "over", ["template"] = "small", ["memory"] = "128M" };
        body[field] = overrideValue is null ? value : new Dictionary<string, string> { [value] = overrideValue };

        var (status, op, problem) = await Env.Api.CreateAsync(body);

        Assert.Null(op);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(ProblemTypes.TemplateOverride, problem!.Type);
        Assert.Contains("fixed by template 'small'", string.Join(" ", problem.Errors!.Values.SelectMany(v => v)));
        Assert.Null(await Env.Api.GetAsync("over"));
    }

    [Fact]
    public async Task Cli_TemplateOverride_FailsWithOneReadableLine()
    {
        await EnsureTemplateAsync();

        var r = await Env.CliAsync("vm", "create", "over2", "--template", "small", "--set", "disk.bus=ide");

        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("disk.bus is fixed by template 'small'", r.Err);
        Assert.Null(await Env.Api.GetAsync("over2"));
    }

    [Fact]
    public async Task Cli_BadTemplate_IsRefusedOnAddWithTheReason()
    {
        var file = Path.Combine(Env.StateDir, "bad.xml");
        await File.WriteAllTextAsync(file, Small.Replace("<interface type='user'>", "<interface type='{{network}}'>", StringComparison.Ordinal));

        var r = await Env.CliAsync("template", "add", "bad", "--file", file);

        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("unknown placeholder {{network}}", r.Err);
        using var shown = await Env.Api.Http.GetAsync("/api/v1/templates/bad");
        Assert.Equal(HttpStatusCode.NotFound, shown.StatusCode);
    }

    [Fact]
    public async Task AgentWhoseLibvirtdDoesNotAnswer_StillJoinsAndSaysWhy()
    {
        var agent = await Env.StartAgentAsync("nolv", 1, "1G", "--libvirt", $"qemu+unix:///system?socket={Path.Combine(Env.StateDir, "no-such-libvirt-sock")}");

        Assert.False(agent.HasExited);
        Assert.Contains("does not answer", agent.Log);
        agent.Stop(TimeSpan.FromSeconds(10));
        // It carries the libvirt label: gone, so the other tests' templated VMs are never placed on it.
        using var removed = await Env.Api.Http.DeleteAsync("/api/v1/nodes/nolv");
        Assert.True(removed.IsSuccessStatusCode, await removed.Content.ReadAsStringAsync());
    }
}
