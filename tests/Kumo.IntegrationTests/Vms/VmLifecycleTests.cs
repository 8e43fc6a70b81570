using System.Net;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Vms;

public sealed class LocalKumo : IAsyncLifetime
{
    public KumoEnvironment Env { get; private set; } = null!;

    public async Task InitializeAsync() => Env = await KumoEnvironment.StartAsync();

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

/// <summary>Real TCG guests from the tiny image, driven through the REST API of a real all-in-one kumod.</summary>
[Trait("Category", "Slow")]
public sealed class VmLifecycleTests(LocalKumo fixture) : IClassFixture<LocalKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private async Task<Instance> InstanceAsync(string name) => await Env.Api.GetAsync(name) ?? throw new InvalidOperationException(name + " missing");

    private string Dir(Instance i) => Path.Combine(Env.LocalInstancesDir, i.Id);

    [Fact]
    public async Task Create_BecomesRunningOnlyAfterTheGuestSignalsReady()
    {
        var op = await Env.CreateAsync("boot1");
        Assert.True(op.Status == OperationStatuses.Succeeded, $"{op.Error}\n{Env.Diagnostics()}");
        var vm = await InstanceAsync("boot1");
        Assert.Equal(InstanceStates.Running, vm.State);
        Assert.Equal("local", vm.Node);
        // Running means the guest's init got to userspace and spoke on the readiness channel.
        Assert.Contains("kumo tiny: booted", await File.ReadAllTextAsync(Path.Combine(Dir(vm), "console.log")));
        Assert.Single(Repo.QemuPids(Dir(vm)));
        await Env.DoAsync("boot1", "force-delete");
    }

    [Fact]
    public async Task FileOnDataDisk_SurvivesStopAndStart()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("data1")).Status);
        var vm = await InstanceAsync("data1");
        var serial = Path.Combine(Dir(vm), "serial.sock");
        await SerialConsole.RunAsync(serial, "echo kumo-persist-42 > /data/proof; sync", TimeSpan.FromSeconds(30));

        var stop = await Env.DoAsync("data1", "stop");
        Assert.Equal(OperationStatuses.Succeeded, stop.Status);
        Assert.Equal(InstanceStates.Stopped, (await InstanceAsync("data1")).State);
        Assert.Empty(Repo.QemuPids(Dir(vm)));

        var start = await Env.DoAsync("data1", "start");
        Assert.Equal(OperationStatuses.Succeeded, start.Status);
        var output = await SerialConsole.RunAsync(serial, "cat /data/proof", TimeSpan.FromSeconds(30));
        Assert.Contains("kumo-persist-42", output);
        await Env.DoAsync("data1", "force-delete");
    }

    [Fact]
    public async Task Destroy_PowersOffAtOnce_ListShowsItStopped_DeleteLeavesNothingBehind()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("gone1")).Status);
        var vm = await InstanceAsync("gone1");
        Assert.Single(Repo.QemuPids(Dir(vm)));

        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("gone1", "destroy")).Status);
        Assert.Empty(Repo.QemuPids(Dir(vm)));
        var listed = (await Env.Api.ListAsync()).Single(i => i.Name == "gone1");
        Assert.Equal(InstanceStates.Stopped, listed.State);
        var running = await Env.Api.Http.GetStringAsync("/api/v1/instances?state=running");
        Assert.DoesNotContain("\"gone1\"", running);

        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("gone1", "delete")).Status);
        Assert.Null(await Env.Api.GetAsync("gone1"));
        Assert.False(Directory.Exists(Dir(vm)), "instance directory (disk, sockets) must be removed");
        Assert.Empty(Repo.QemuPids(Dir(vm)));
    }

    [Fact]
    public async Task Delete_OfRunningInstance_NeedsForce()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("del1")).Status);
        var vm = await InstanceAsync("del1");
        var (status, _, problem) = await Env.Api.ActAsync("del1", "delete");
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Equal(ProblemTypes.InvalidState, problem!.Type);
        Assert.Single(Repo.QemuPids(Dir(vm)));

        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("del1", "force-delete")).Status);
        Assert.Empty(Repo.QemuPids(Dir(vm)));
        Assert.False(Directory.Exists(Dir(vm)));
    }

    [Fact]
    public async Task Restart_BootsTheGuestAgainInANewProcess()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("rst1")).Status);
        var vm = await InstanceAsync("rst1");
        var before = Assert.Single(Repo.QemuPids(Dir(vm)));
        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("rst1", "restart")).Status);
        var after = Assert.Single(Repo.QemuPids(Dir(vm)));
        Assert.NotEqual(before, after);
        var log = await File.ReadAllTextAsync(Path.Combine(Dir(vm), "console.log"));
        Assert.Equal(2, log.Split("kumo tiny: booted").Length - 1);
        await Env.DoAsync("rst1", "force-delete");
    }

    [Fact]
    public async Task CreateStopped_MakesTheDiskWithoutBooting()
    {
        var op = await Env.CreateAsync("cold1", new { stopped = true });
        Assert.Equal(OperationStatuses.Succeeded, op.Status);
        var vm = await InstanceAsync("cold1");
        Assert.Equal(InstanceStates.Stopped, vm.State);
        Assert.True(File.Exists(Path.Combine(Dir(vm), "disk.qcow2")));
        Assert.Empty(Repo.QemuPids(Dir(vm)));
        await Env.DoAsync("cold1", "delete");
    }

    [Fact]
    public async Task GuestPoweringItselfOff_IsReportedStopped()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("self1")).Status);
        var vm = await InstanceAsync("self1");
        // The guest's own shutdown, as a student typing poweroff would do.
        _ = SerialConsole.RunAsync(Path.Combine(Dir(vm), "serial.sock"), "sync; poweroff -f", TimeSpan.FromSeconds(10))
            .ContinueWith(_ => { }, TaskScheduler.Default);
        var stopped = await ApiClient.EventuallyAsync(() => Env.Api.GetAsync("self1"), i => i?.State == InstanceStates.Stopped,
            TimeSpan.FromSeconds(30), "self1 to be stopped");
        Assert.Equal(PowerStates.Stopped, stopped!.DesiredPower);
        Assert.Empty(Repo.QemuPids(Dir(vm)));
        await Env.DoAsync("self1", "delete");
    }
}
