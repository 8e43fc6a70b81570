using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Kumo.IntegrationTests.Vms;

/// <summary>
/// kumod whose built base images are cached next to the tiny image (KUMO_TEST_IMAGES/base-cache), so the Debian vm
/// image is built by mmdebstrap once per machine (and again only when scripts/build-debian-image.sh changes).
/// </summary>
public sealed class DebianKumo : IAsyncLifetime
{
    public KumoEnvironment Env { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Env = await KumoEnvironment.StartAsync(true, "--image-cache", Path.Combine(await TestImages.DirAsync(), "base-cache"), "--capacity-cpus", "8");

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

/// <summary>
/// `kumo image build-base debian`: a real Debian 12 guest built from the Debian mirror boots from its own disk under
/// TCG to the readiness signal, with the SSH key and password given at create time (cloud-init NoCloud seed); and the
/// container kind runs a real Debian userland. One Debian boot in the whole suite: TCG takes minutes for it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class DebianImageTests(DebianKumo fixture, ITestOutputHelper output) : IClassFixture<DebianKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private Task<CliResult> Kumo(params string[] args) => Env.CliAsync(args);

    private static void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}");

    private static Operation Accepted(CliResult r)
    {
        Ok(r);
        return JsonSerializer.Deserialize<Operation>(r.Out, ApiClient.Json)!;
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

    [Fact]
    public async Task BuildBaseDebianVm_BootsFromItsOwnDiskToReadiness_AndTheSeedGaveTheUserTheKeyAndPassword()
    {
        var clock = Stopwatch.StartNew();
        var build = await Env.Api.WaitAsync(Accepted(await Kumo("image", "build-base", "debian", "--type", "vm", "--no-wait", "-o", "json")),
            TimeSpan.FromMinutes(40));
        Assert.True(build.Status == OperationStatuses.Succeeded, $"{build.Error}\n{Env.Diagnostics()}");
        output.WriteLine($"build-base debian --type vm: {clock.Elapsed.TotalSeconds:0} s ({build.Message})");

        var show = await Kumo("image", "show", "debian", "-o", "json");
        Ok(show);
        var image = JsonSerializer.Deserialize<Image>(show.Out, ApiClient.Json)!;
        Assert.Equal(ReadinessModes.Marker, image.Readiness);
        Assert.Equal("system", image.Project);
        Assert.NotNull(image.Sha256);

        var keys = Path.Combine(Env.StateDir, "keys");
        Directory.CreateDirectory(keys);
        var key = Path.Combine(keys, "id_ed25519");
        await RunAsync("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kumo-test", "-f", key);
        var publicKey = (await File.ReadAllTextAsync(key + ".pub")).Trim();
        var password = "pw-" + Guid.NewGuid().ToString("n")[..12];
        var passwordFile = Path.Combine(keys, "password");
        await File.WriteAllTextAsync(passwordFile, password + "\n");

        clock.Restart();
        var create = await Env.Api.WaitAsync(Accepted(await Kumo("vm", "create", "d1", "--image", "debian", "--cpus", "1", "--memory", "512M",
            "--ssh-key", key + ".pub", "--password-file", passwordFile, "--no-wait", "-o", "json")), TimeSpan.FromMinutes(15));
        Assert.True(create.Status == OperationStatuses.Succeeded, $"{create.Error}\n{Env.Diagnostics()}");
        output.WriteLine($"vm create d1 --image debian to READY (own disk, TCG): {clock.Elapsed.TotalSeconds:0} s");
        var vm = (await Env.Api.GetAsync("d1"))!;
        Assert.Equal(InstanceStates.Running, vm.State);

        // The password logs the user in on the serial console, and the key is in that user's authorized_keys.
        await using var console = await ConsoleSocket.ConnectAsync(Env, "d1");
        await console.TypeAsync("\n");
        await console.WaitForAsync(new Regex(@"login: *$", RegexOptions.Multiline), TimeSpan.FromMinutes(2));
        await console.TypeAsync("debian\n");
        await console.WaitForAsync(new Regex("Password: *$", RegexOptions.Multiline), TimeSpan.FromMinutes(1));
        await console.TypeAsync(password + "\n");
        await console.WaitForAsync(new Regex(@"debian@\S+:~\$ *$", RegexOptions.Multiline), TimeSpan.FromMinutes(2));
        await console.TypeAsync("cat ~/.ssh/authorized_keys; echo KEYS-$((40+2))\n");
        var listed = await console.WaitForAsync(new Regex(@"(ssh-ed25519 \S+ kumo-test)\s+KEYS-42"), TimeSpan.FromMinutes(1));
        Assert.Equal(publicKey, listed.Groups[1].Value);

        Ok(await Kumo("vm", "delete", "d1", "--force"));
    }

    [Fact]
    public async Task BuildBaseDebianContainer_RunsARealDebianUserland()
    {
        var build = await Kumo("image", "build-base", "debian", "--type", "container");
        Ok(build);
        var list = await Kumo("image", "list", "--type", "container");
        Assert.Contains("debian", list.Out);

        // The node builds the rootfs with mmdebstrap on first use (about a minute and a half), so do not wait in the CLI.
        var clock = Stopwatch.StartNew();
        Ok(await Kumo("ct", "run", "deb1", "--image", "debian", "--no-wait", "--", "cat", "/etc/debian_version"));
        var logs = await ApiClient.EventuallyAsync(async () => (await Kumo("ct", "logs", "deb1")).Out, l => Regex.IsMatch(l, @"^12\.\d+", RegexOptions.Multiline),
            TimeSpan.FromMinutes(10), "deb1 to print /etc/debian_version");
        output.WriteLine($"first debian container on a node (rootfs build + run): {clock.Elapsed.TotalSeconds:0} s; {logs.Trim()}");
        Ok(await Kumo("ct", "rm", "deb1", "--force"));
    }

    [Fact]
    public async Task BuildBase_UnknownDistroOrType_IsOneClearLineAndBuildsNothing()
    {
        var distro = await Kumo("image", "build-base", "ubuntu");
        Assert.NotEqual(0, distro.ExitCode);
        Assert.Contains("cannot build 'ubuntu'", distro.Err);
        Assert.Contains("debian", distro.Err);

        var type = await Kumo("image", "build-base", "debian", "--type", "vmx");
        Assert.NotEqual(0, type.ExitCode);
        Assert.Contains("'vmx'", type.Err);

        var images = await Kumo("image", "list", "-o", "json");
        Assert.DoesNotContain("ubuntu", images.Out);
    }
}
