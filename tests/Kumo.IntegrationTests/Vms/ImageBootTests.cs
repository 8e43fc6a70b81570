using System.Diagnostics;
using System.Text.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Vms;

/// <summary>
/// Images imported through `kumo image import` from fixtures made here (a disk with its own SYSLINUX bootloader,
/// exported to VMDK, a Vagrant box and an OVA with qemu-img and tar) boot from their own disk on a real agent.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ImageBootTests(LocalKumo fixture) : IClassFixture<LocalKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private Task<CliResult> Kumo(params string[] args) => Env.CliAsync(args);

    private static void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}");

    private string Fixtures
    {
        get
        {
            var dir = Path.Combine(Env.StateDir, "fixtures");
            Directory.CreateDirectory(dir);
            return dir;
        }
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: {await stderr}");
    }

    /// <summary>The bootable qcow2 this class's tests start from.</summary>
    private async Task<string> BootDiskAsync()
    {
        var disk = Path.Combine(Fixtures, "boot.qcow2");
        if (!File.Exists(disk))
            await RunAsync("bash", Path.Combine(Repo.Root, "scripts", "make-boot-disk.sh"), Path.Combine(await TestImages.DirAsync(), "tiny"), disk);
        return disk;
    }

    private async Task<Image> ShowAsync(string name)
    {
        var show = await Kumo("image", "show", name, "-o", "json");
        Ok(show);
        return JsonSerializer.Deserialize<Image>(show.Out, ApiClient.Json)!;
    }

    [Fact]
    public async Task Import_VmdkBoxAndOva_EachBootsFromItsOwnDisk()
    {
        var disk = await BootDiskAsync();
        var dir = Path.Combine(Fixtures, "formats");
        Directory.CreateDirectory(dir);
        var vmdk = Path.Combine(dir, "disk1.vmdk");
        await RunAsync("qemu-img", "convert", "-f", "qcow2", "-O", "vmdk", "-o", "subformat=streamOptimized", disk, vmdk);
        File.Copy(disk, Path.Combine(dir, "box.img"));
        await File.WriteAllTextAsync(Path.Combine(dir, "metadata.json"), """{"provider":"libvirt","format":"qcow2","virtual_size":1}""");
        var box = Path.Combine(Fixtures, "lab.box");
        await RunAsync("tar", "-C", dir, "-czf", box, "metadata.json", "box.img");
        await File.WriteAllTextAsync(Path.Combine(dir, "vm.ovf"),
            """<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><References><File ovf:href="disk1.vmdk" ovf:id="file1"/></References></Envelope>""");
        var ova = Path.Combine(Fixtures, "appliance.ova");
        await RunAsync("tar", "-C", dir, "-cf", ova, "vm.ovf", "disk1.vmdk");

        foreach (var (file, name, format) in new[] { (vmdk, "from-vmdk", "vmdk"), (box, "from-box", "box"), (ova, "from-ova", "ova") })
        {
            var import = await Kumo("image", "import", file, "--name", name, "--readiness", "marker");
            Ok(import);
            Assert.Contains("uploading", import.Out);
            var image = await ShowAsync(name);
            Assert.Equal(format, image.SourceFormat);
            Assert.Equal(ReadinessModes.Marker, image.Readiness);
            Assert.Matches("^[0-9a-f]{64}$", image.Sha256!);
        }
        // The file name gives the default image name.
        Ok(await Kumo("image", "import", ova));
        Assert.Equal("ova", (await ShowAsync("appliance")).SourceFormat);

        // Two guests at once keep the TCG time down; the vmdk import is the OVA's disk, so it is covered by it.
        var boots = new[] { ("g-box", "from-box"), ("g-ova", "from-ova") }
            .Select(g => Env.CreateAsync(g.Item1, new { image = g.Item2 }, TimeSpan.FromMinutes(6))).ToList();
        foreach (var op in await Task.WhenAll(boots))
            Assert.True(op.Status == OperationStatuses.Succeeded, $"{op.Target}: {op.Error}\n{Env.Diagnostics()}");

        foreach (var name in new[] { "g-box", "g-ova" })
        {
            var vm = (await Env.Api.GetAsync(name))!;
            Assert.Equal(InstanceStates.Running, vm.State);
            var instanceDir = Path.Combine(Env.LocalInstancesDir, vm.Id);
            var pid = Assert.Single(Repo.QemuPids(instanceDir));
            var cmdline = (await File.ReadAllTextAsync($"/proc/{pid}/cmdline")).Split('\0');
            // No kernel or initrd from Kumo, yet the tiny system booted: its own disk's bootloader (SYSLINUX) loaded it.
            // The SYSLINUX banner itself is not asserted: the console log starts when the agent attaches to the
            // serial socket, which on a loaded machine can be after the bootloader printed it.
            Assert.DoesNotContain("-kernel", cmdline);
            Assert.DoesNotContain("-initrd", cmdline);
            var console = await File.ReadAllTextAsync(Path.Combine(instanceDir, "console.log"));
            Assert.Contains("kumo tiny: booted", console);
        }

        // Each node fetched each image once, checksummed, into the agent's own state dir.
        var cached = Directory.GetFiles(Path.Combine(Env.StateDir, "agent", "images"), "*.qcow2");
        Assert.Equal(2, cached.Length);

        var inUse = await Kumo("image", "rm", "from-box");
        Assert.Equal(1, inUse.ExitCode);
        Assert.Contains("g-box", inUse.Err);
        Ok(await Kumo("vm", "delete", "g-box", "--force"));
        Ok(await Kumo("vm", "delete", "g-ova", "--force"));
        Ok(await Kumo("image", "rm", "from-box"));
        var list = await Kumo("image", "list", "--type", "vm");
        Ok(list);
        Assert.DoesNotContain("from-box", list.Out);
        Assert.Contains("from-ova", list.Out);
    }

    [Fact]
    public async Task Export_WritesEachFormat_QcowMatchesTheStoredChecksum()
    {
        var disk = await BootDiskAsync();
        Ok(await Kumo("image", "import", disk, "--name", "exp"));
        var image = await ShowAsync("exp");

        var qcow = Path.Combine(Fixtures, "out.qcow2");
        var export = await Kumo("image", "export", "exp", qcow);
        Ok(export);
        Assert.Contains("exported exp", export.Out);
        await using (var f = File.OpenRead(qcow))
            Assert.Equal(image.Sha256, Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(f)));

        var vmdk = Path.Combine(Fixtures, "out.vmdk");
        Ok(await Kumo("image", "export", "exp", vmdk));
        var info = new ProcessStartInfo("qemu-img", ["info", "--output=json", vmdk]) { RedirectStandardOutput = true };
        using (var p = Process.Start(info)!)
        {
            var json = await p.StandardOutput.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.Equal("vmdk", JsonDocument.Parse(json).RootElement.GetProperty("format").GetString());
        }

        var again = await Kumo("image", "export", "exp", vmdk);
        Assert.NotEqual(0, again.ExitCode);
        Assert.Contains("--force", again.Err);
        Ok(await Kumo("image", "export", "exp", vmdk, "--force"));
        Assert.Empty(Directory.GetFiles(Fixtures, "*.part"));
    }

    [Fact]
    public async Task BadImports_GiveOneErrorLine_AndLeaveNothing()
    {
        var missing = await Kumo("image", "import", Path.Combine(Fixtures, "nope.qcow2"));
        Assert.NotEqual(0, missing.ExitCode);
        Assert.StartsWith("error: ", missing.Err);
        Assert.Contains("no such file", missing.Err);

        // A qcow2 whose backing file points at a host file must never be read through.
        var hostile = Path.Combine(Fixtures, "hostile.qcow2");
        await RunAsync("qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow", hostile, "1M");
        var refused = await Kumo("image", "import", hostile, "--name", "hostile");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("backing", refused.Err);

        var notAnImage = Path.Combine(Fixtures, "notes.txt");
        await File.WriteAllTextAsync(notAnImage, "just text\n");
        var text = await Kumo("image", "import", notAnImage, "--name", "notes");
        Assert.Equal(1, text.ExitCode);
        Assert.StartsWith("error: ", text.Err);

        var builtIn = await Kumo("image", "rm", "tiny");
        Assert.Equal(1, builtIn.ExitCode);
        Assert.Contains("built in", builtIn.Err);

        var list = await Kumo("image", "list", "-o", "json");
        Ok(list);
        var names = JsonSerializer.Deserialize<Image[]>(list.Out, ApiClient.Json)!.Select(i => i.Name).ToList();
        Assert.DoesNotContain("hostile", names);
        Assert.DoesNotContain("notes", names);
    }
}
