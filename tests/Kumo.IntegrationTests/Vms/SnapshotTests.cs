using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Vms;

/// <summary>Snapshots of real TCG guests (the tiny image mounts the VM's disk at /data), checked through the serial console.</summary>
[Trait("Category", "Slow")]
public sealed class SnapshotTests(LocalKumo fixture) : IClassFixture<LocalKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private async Task<Instance> InstanceAsync(string name) => await Env.Api.GetAsync(name) ?? throw new InvalidOperationException(name + " missing");

    private string Dir(Instance i) => Path.Combine(Env.LocalInstancesDir, i.Id);

    private async Task<string> ShellAsync(Instance vm, string command) =>
        await SerialConsole.RunAsync(Path.Combine(Dir(vm), "serial.sock"), command, TimeSpan.FromSeconds(60));

    private async Task<(HttpStatusCode Status, Operation? Operation, Problem? Problem)> SendAsync(HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body, options: ApiClient.Json) };
        using var r = await Env.Api.Http.SendAsync(request);
        return r.IsSuccessStatusCode
            ? (r.StatusCode, await r.Content.ReadFromJsonAsync<Operation>(ApiClient.Json), null)
            : (r.StatusCode, null, await r.Content.ReadFromJsonAsync<Problem>(ApiClient.Json));
    }

    private async Task<Operation> DoAsync(HttpMethod method, string path, object? body = null)
    {
        var (status, op, problem) = await SendAsync(method, path, body);
        Assert.True(op is not null, $"{method} {path}: {(int)status} {problem?.Type} {problem?.Detail}");
        var final = await Env.Api.WaitAsync(op);
        Assert.True(final.Status == OperationStatuses.Succeeded, $"{method} {path}: {final.Error}\n{Env.Diagnostics()}");
        return final;
    }

    private Task<Operation> SnapshotAsync(string vm, string name, bool? memory = null) =>
        DoAsync(HttpMethod.Post, $"/api/v1/instances/{vm}/snapshots", new SnapshotsPost { Name = name, Memory = memory });

    private Task<Operation> RestoreAsync(string vm, string name) => DoAsync(HttpMethod.Post, $"/api/v1/instances/{vm}/snapshots/{name}/restore");

    private async Task<List<Snapshot>> ListAsync(string vm) =>
        await Env.Api.Http.GetFromJsonAsync<List<Snapshot>>($"/api/v1/instances/{vm}/snapshots", ApiClient.Json) ?? [];

    [Fact]
    public async Task RamSnapshot_Restore_BringsBackTheFileWrittenBefore_RemovesTheOneWrittenAfter_AndKeepsRunning()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("snapram")).Status);
        var vm = await InstanceAsync("snapram");
        await ShellAsync(vm, "echo kumo-before > /data/before; sync");

        await SnapshotAsync("snapram", "s1");
        var listed = Assert.Single(await ListAsync("snapram"));
        Assert.Equal(("s1", true, SnapshotStates.Ready), (listed.Name, listed.Memory, listed.State));

        await ShellAsync(vm, "echo kumo-after > /data/after; echo ram > /tmp/after-ram; sync");
        var pid = Assert.Single(Repo.QemuPids(Dir(vm)));

        await RestoreAsync("snapram", "s1");

        Assert.Equal(InstanceStates.Running, (await InstanceAsync("snapram")).State);
        // RAM state came back in the same QEMU process: no reboot.
        Assert.Equal(pid, Assert.Single(Repo.QemuPids(Dir(vm))));
        var files = await ShellAsync(vm, "ls /data /tmp");
        Assert.Contains("before", files);
        Assert.DoesNotContain("after", files);
        Assert.Contains("kumo-before", await ShellAsync(vm, "cat /data/before"));
        await Env.DoAsync("snapram", "force-delete");
    }

    [Fact]
    public async Task DiskOnlySnapshot_OfRunningVm_RestoreStopsRevertsTheDiskAndBootsAgain()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("snapdisk")).Status);
        var vm = await InstanceAsync("snapdisk");
        await ShellAsync(vm, "echo kumo-before > /data/before; sync");

        await SnapshotAsync("snapdisk", "d1", memory: false);
        Assert.False(Assert.Single(await ListAsync("snapdisk")).Memory);
        await ShellAsync(vm, "echo kumo-after > /data/after; sync");
        var pid = Assert.Single(Repo.QemuPids(Dir(vm)));

        await RestoreAsync("snapdisk", "d1");

        Assert.Equal(InstanceStates.Running, (await InstanceAsync("snapdisk")).State);
        Assert.NotEqual(pid, Assert.Single(Repo.QemuPids(Dir(vm))));
        var files = await ShellAsync(vm, "ls /data");
        Assert.Contains("before", files);
        Assert.DoesNotContain("after", files);
        await Env.DoAsync("snapdisk", "force-delete");
    }

    [Fact]
    public async Task StoppedVm_DiskSnapshots_AndBadInput_AreRefusedWithProblems()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("snapcold", new { stopped = true })).Status);
        var vm = await InstanceAsync("snapcold");

        // A stopped VM has no RAM to save: the default is disk-only, and asking for RAM is refused.
        var (status, _, problem) = await SendAsync(HttpMethod.Post, "/api/v1/instances/snapcold/snapshots", new SnapshotsPost { Name = "r", Memory = true });
        Assert.Equal((HttpStatusCode.Conflict, ProblemTypes.InvalidState), (status, problem!.Type));

        (status, _, problem) = await SendAsync(HttpMethod.Post, "/api/v1/instances/snapcold/snapshots", new SnapshotsPost { Name = "Not_Valid" });
        Assert.Equal((HttpStatusCode.BadRequest, ProblemTypes.Validation), (status, problem!.Type));

        await SnapshotAsync("snapcold", "c1");
        Assert.False(Assert.Single(await ListAsync("snapcold")).Memory);
        var onDisk = await Repo.RunAsync("qemu-img", "snapshot", "-l", Path.Combine(Dir(vm), "disk.qcow2"));
        Assert.Contains("c1", onDisk);

        (status, _, problem) = await SendAsync(HttpMethod.Post, "/api/v1/instances/snapcold/snapshots", new SnapshotsPost { Name = "c1" });
        Assert.Equal((HttpStatusCode.Conflict, ProblemTypes.Conflict), (status, problem!.Type));
        (status, _, problem) = await SendAsync(HttpMethod.Post, "/api/v1/instances/snapcold/snapshots/nope/restore");
        Assert.Equal((HttpStatusCode.NotFound, ProblemTypes.NotFound), (status, problem!.Type));
        (status, _, problem) = await SendAsync(HttpMethod.Delete, "/api/v1/instances/snapcold/snapshots/nope");
        Assert.Equal((HttpStatusCode.NotFound, ProblemTypes.NotFound), (status, problem!.Type));
        Assert.Single(await ListAsync("snapcold"));

        // Restoring on a stopped VM reverts its disk and leaves it stopped.
        await RestoreAsync("snapcold", "c1");
        Assert.Equal(InstanceStates.Stopped, (await InstanceAsync("snapcold")).State);

        // The CLI: one readable line and a non-zero exit for a bad name; list and delete work.
        var bad = await Env.CliAsync("vm", "snapshot", "snapcold", "restore", "missing");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("missing", bad.Err);
        var list = await Env.CliAsync("vm", "snapshot", "snapcold", "list");
        Assert.True(list.ExitCode == 0, list.Err);
        Assert.Contains("c1", list.Out);
        var delete = await Env.CliAsync("vm", "snapshot", "snapcold", "delete", "c1");
        Assert.True(delete.ExitCode == 0, delete.Err);
        Assert.Empty(await ListAsync("snapcold"));
        Assert.DoesNotContain("c1", await Repo.RunAsync("qemu-img", "snapshot", "-l", Path.Combine(Dir(vm), "disk.qcow2")));
        await Env.DoAsync("snapcold", "delete");
    }
}
