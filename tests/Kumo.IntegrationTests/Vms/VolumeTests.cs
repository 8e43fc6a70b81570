using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Vms;

/// <summary>Volumes on real TCG guests: hot-plug through QMP, data kept across detach/attach, resize seen by the guest.</summary>
[Trait("Category", "Slow")]
public sealed class VolumeTests(LocalKumo fixture) : IClassFixture<LocalKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private async Task<Instance> InstanceAsync(string name) => await Env.Api.GetAsync(name) ?? throw new InvalidOperationException(name + " missing");

    private async Task<string> ShellAsync(Instance vm, string command) =>
        await SerialConsole.RunAsync(Path.Combine(Env.LocalInstancesDir, vm.Id, "serial.sock"), command, TimeSpan.FromSeconds(60));

    /// <summary>The guest's block device whose serial is the volume's name, e.g. "vdb"; null when none.</summary>
    private async Task<string?> DeviceAsync(Instance vm, string volume)
    {
        var lines = await ShellAsync(vm, "for d in /sys/block/vd*; do echo \"dev=${d##*/} serial=$(cat $d/serial 2>/dev/null)\"; done");
        return lines.Split('\n').Select(l => l.Trim()).Where(l => l.EndsWith($"serial={volume}", StringComparison.Ordinal))
            .Select(l => l["dev=".Length..l.IndexOf(' ', StringComparison.Ordinal)]).FirstOrDefault();
    }

    /// <summary>
    /// Polls the guest until the volume's disk is there (or gone): PCIe hot-plug reaches the guest's kernel
    /// asynchronously, a moment after QEMU accepted device_add.
    /// </summary>
    private async Task<string?> WaitDeviceAsync(Instance vm, string volume, bool present)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            var dev = await DeviceAsync(vm, volume);
            if ((dev is not null) == present) return dev;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{vm.Name}: volume {volume} still {(present ? "absent" : "present")}; guest has: "
                    + await ShellAsync(vm, "ls /sys/block; dmesg | tail -20") + "\n" + Env.Diagnostics());
            await Task.Delay(200);
        }
    }

    // The last line: a console that echoed an extra prompt before the answer once made the whole text unparsable.
    private async Task<long> SectorsAsync(Instance vm, string device) =>
        long.Parse((await ShellAsync(vm, $"cat /sys/block/{device}/size")).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1],
            System.Globalization.CultureInfo.InvariantCulture);

    private async Task<(HttpStatusCode Status, T? Value, Problem? Problem)> SendAsync<T>(HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body, options: ApiClient.Json) };
        using var r = await Env.Api.Http.SendAsync(request);
        return r.IsSuccessStatusCode
            ? (r.StatusCode, await r.Content.ReadFromJsonAsync<T>(ApiClient.Json), null)
            : (r.StatusCode, default, await r.Content.ReadFromJsonAsync<Problem>(ApiClient.Json));
    }

    private async Task<Operation> DoAsync(string volume, string action, object body)
    {
        var (status, op, problem) = await SendAsync<Operation>(HttpMethod.Post, $"/api/v1/volumes/{volume}/{action}", body);
        Assert.True(op is not null, $"{action} {volume}: {(int)status} {problem?.Type} {problem?.Detail}");
        var final = await Env.Api.WaitAsync(op);
        Assert.True(final.Status == OperationStatuses.Succeeded, $"{action} {volume}: {final.Error}\n{Env.Diagnostics()}");
        return final;
    }

    private async Task CreateVolumeAsync(string name, string size)
    {
        var (status, _, problem) = await SendAsync<Volume>(HttpMethod.Post, "/api/v1/volumes", new VolumesPost { Name = name, Size = size });
        Assert.True(status == HttpStatusCode.Created, $"{(int)status} {problem?.Detail}");
    }

    [Fact]
    public async Task VolumeData_SurvivesDetachAndAttachToAnotherVm_ResizeIsSeenByTheGuest_AttachmentSurvivesRestart()
    {
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("volvm1")).Status);
        Assert.Equal(OperationStatuses.Succeeded, (await Env.CreateAsync("volvm2")).Status);
        var vm1 = await InstanceAsync("volvm1");
        var vm2 = await InstanceAsync("volvm2");
        await CreateVolumeAsync("vol1", "64M");

        await DoAsync("vol1", "attach", new VolumeAction { Instance = "volvm1" });
        var dev = await WaitDeviceAsync(vm1, "vol1", present: true);
        Assert.True(dev is not null, "the guest should see a disk with serial vol1 at once (hot-plug)");
        Assert.Equal(64L * 1024 * 1024 / 512, await SectorsAsync(vm1, dev));
        await ShellAsync(vm1, $"mke2fs -F -q /dev/{dev} && mkdir -p /mnt/v && mount /dev/{dev} /mnt/v && echo kumo-vol-data > /mnt/v/proof && umount /mnt/v && sync");

        // Delete is refused while attached, and leaves it attached.
        var (status, _, problem) = await SendAsync<Operation>(HttpMethod.Delete, "/api/v1/volumes/vol1");
        Assert.Equal((HttpStatusCode.Conflict, ProblemTypes.VolumeInUse), (status, problem!.Type));

        await DoAsync("vol1", "detach", new VolumeAction { Instance = "volvm1" });
        Assert.Null(await WaitDeviceAsync(vm1, "vol1", present: false));

        await DoAsync("vol1", "resize", new VolumeAction { Size = "128M" });
        await DoAsync("vol1", "attach", new VolumeAction { Instance = "volvm2" });
        var dev2 = await WaitDeviceAsync(vm2, "vol1", present: true);
        Assert.True(dev2 is not null, "volvm2 should see vol1");
        Assert.Equal(128L * 1024 * 1024 / 512, await SectorsAsync(vm2, dev2));
        Assert.Contains("kumo-vol-data", await ShellAsync(vm2, $"mkdir -p /mnt/v && mount /dev/{dev2} /mnt/v && cat /mnt/v/proof; umount /mnt/v"));

        // Growing an attached volume of a running guest shows at once (QMP block_resize).
        await DoAsync("vol1", "resize", new VolumeAction { Size = "192M" });
        Assert.Equal(192L * 1024 * 1024 / 512, await SectorsAsync(vm2, dev2));

        // The attachment is desired state: a restart plugs it in again at launch.
        Assert.Equal(OperationStatuses.Succeeded, (await Env.DoAsync("volvm2", "restart")).Status);
        var after = await WaitDeviceAsync(vm2, "vol1", present: true);
        Assert.True(after is not null, "vol1 should be attached again after the restart");
        Assert.Contains("kumo-vol-data", await ShellAsync(vm2, $"mount /dev/{after} /mnt/v 2>/dev/null || (mkdir -p /mnt/v && mount /dev/{after} /mnt/v); cat /mnt/v/proof; umount /mnt/v"));

        await DoAsync("vol1", "detach", new VolumeAction { Instance = "volvm2" });
        var (deleted, op, _) = await SendAsync<Operation>(HttpMethod.Delete, "/api/v1/volumes/vol1");
        Assert.Equal(HttpStatusCode.Accepted, deleted);
        Assert.Equal(OperationStatuses.Succeeded, (await Env.Api.WaitAsync(op!)).Status);
        Assert.Empty(Directory.GetFiles(Path.Combine(Env.StateDir, "agent", "volumes")));
        await Env.DoAsync("volvm1", "force-delete");
        await Env.DoAsync("volvm2", "force-delete");
    }

    [Fact]
    public async Task BadInput_AndTheDiskQuota_AreRefusedWithProblems_AndLeaveNothing()
    {
        var admin = (await File.ReadAllLinesAsync(Path.Combine(Env.StateDir, "initial-admin")))[0];
        var (status, _, problem) = await SendAsync<Volume>(HttpMethod.Post, "/api/v1/volumes", new VolumesPost { Name = "Bad_Name", Size = "1G" });
        Assert.Equal((HttpStatusCode.BadRequest, ProblemTypes.Validation), (status, problem!.Type));
        (status, _, problem) = await SendAsync<Volume>(HttpMethod.Post, "/api/v1/volumes", new VolumesPost { Name = "v2", Size = "lots" });
        Assert.Equal((HttpStatusCode.BadRequest, ProblemTypes.Validation), (status, problem!.Type));

        await CreateVolumeAsync("qv", "512M");
        (status, _, problem) = await SendAsync<Volume>(HttpMethod.Post, "/api/v1/volumes", new VolumesPost { Name = "qv", Size = "1G" });
        Assert.Equal((HttpStatusCode.Conflict, ProblemTypes.Conflict), (status, problem!.Type));
        (status, _, problem) = await SendAsync<Operation>(HttpMethod.Post, "/api/v1/volumes/qv/attach", new VolumeAction { Instance = "no-such-vm" });
        Assert.Equal((HttpStatusCode.NotFound, ProblemTypes.NotFound), (status, problem!.Type));
        (status, _, problem) = await SendAsync<Operation>(HttpMethod.Post, "/api/v1/volumes/qv/resize", new VolumeAction { Size = "256M" });
        Assert.Equal((HttpStatusCode.BadRequest, ProblemTypes.Validation), (status, problem!.Type));
        (status, _, problem) = await SendAsync<Operation>(HttpMethod.Delete, "/api/v1/volumes/nope");
        Assert.Equal((HttpStatusCode.NotFound, ProblemTypes.NotFound), (status, problem!.Type));

        // Volumes count in the disk quota: with 1 GiB allowed and 512 MiB in use, 1 GiB more is refused, naming the disk quota.
        using (var put = await Env.Api.Http.PutAsJsonAsync($"/api/v1/quotas/user/{admin}", new { disk = "1G" }, ApiClient.Json))
            put.EnsureSuccessStatusCode();
        try
        {
            (status, _, problem) = await SendAsync<Volume>(HttpMethod.Post, "/api/v1/volumes", new VolumesPost { Name = "big", Size = "1G" });
            Assert.Equal((HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded), (status, problem!.Type));
            Assert.Contains("disk", problem.Detail);
            (status, _, problem) = await SendAsync<Operation>(HttpMethod.Post, "/api/v1/volumes/qv/resize", new VolumeAction { Size = "2G" });
            Assert.Equal((HttpStatusCode.Forbidden, ProblemTypes.QuotaExceeded), (status, problem!.Type));
            Assert.Contains("disk", problem.Detail);
        }
        finally
        {
            using var reset = await Env.Api.Http.PutAsJsonAsync($"/api/v1/quotas/user/{admin}", new { disk = "4T" }, ApiClient.Json);
        }
        var volumes = await Env.Api.Http.GetFromJsonAsync<List<Volume>>("/api/v1/volumes", ApiClient.Json);
        var qv = Assert.Single(volumes!);
        Assert.Equal(512L * 1024 * 1024, qv.SizeBytes);

        // The CLI: one readable line and a non-zero exit for a bad name; list shows the volume; delete removes it.
        var bad = await Env.CliAsync("volume", "create", "Bad_Name", "--size", "1G");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Single(bad.Err.Trim().Split('\n'));
        var list = await Env.CliAsync("volume", "list");
        Assert.True(list.ExitCode == 0, list.Err);
        Assert.Contains("qv", list.Out);
        var delete = await Env.CliAsync("volume", "delete", "qv");
        Assert.True(delete.ExitCode == 0, delete.Err);
        Assert.Empty((await Env.Api.Http.GetFromJsonAsync<List<Volume>>("/api/v1/volumes", ApiClient.Json))!);
    }
}
