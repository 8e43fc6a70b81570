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

    public async Task DisposeAsync()
    {
        try
        {
            var node = (await Env.Api.NodesAsync()).Single(n => n.Name == "local");
            await Networking.NetworkHost.CleanUpAsync(Path.Combine(Env.StateDir, "agent"), Networking.NetworkHost.TableOf(node.Id));
        }
        finally
        {
            await Env.DisposeAsync();
        }
    }
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
    public async Task BuildBaseDebianVm_BootsFromItsOwnDiskToReadiness_AndTheSeedLetsTheUserInByPasswordAndBySsh()
    {
        var clock = Stopwatch.StartNew();
        var build = await Env.Api.WaitAsync(Accepted(await Kumo("image", "build-base", "debian", "--type", "vm", "--no-wait", "-o", "json")),
            TimeSpan.FromMinutes(40));
        Assert.True(build.Status == OperationStatuses.Succeeded, $"{build.Error}\n{Env.Diagnostics()}");
        output.WriteLine($"build-base debian --type vm: {clock.Elapsed.TotalSeconds:0} s ({build.Message})");

        // By type: the container image of the same name may exist too (names are unique per project and type).
        var list = await Kumo("image", "list", "--type", "vm", "-o", "json");
        Ok(list);
        var image = JsonSerializer.Deserialize<List<Image>>(list.Out, ApiClient.Json)!.Single(i => i.Name == "debian");
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

        // On a tenant network (10.88/16 is this test's range), so a port forward can reach the guest's sshd.
        using (var net = await Env.Api.Http.PostAsync("/api/v1/networks",
            System.Net.Http.Json.JsonContent.Create(new NetworksPost { Name = "dlan", Subnet = "10.88.213.0/24" }, options: ApiClient.Json)))
            Assert.True(net.IsSuccessStatusCode, await net.Content.ReadAsStringAsync());

        clock.Restart();
        var create = await Env.Api.WaitAsync(Accepted(await Kumo("vm", "create", "d1", "--image", "debian", "--cpus", "1", "--memory", "512M",
            "--network", "dlan", "--ssh-key", key + ".pub", "--password-file", passwordFile, "--no-wait", "-o", "json")), TimeSpan.FromMinutes(15));
        Assert.True(create.Status == OperationStatuses.Succeeded, $"{create.Error}\n{Env.Diagnostics()}");
        output.WriteLine($"vm create d1 --image debian to READY (own disk, TCG): {clock.Elapsed.TotalSeconds:0} s");
        var vm = (await Env.Api.GetAsync("d1"))!;
        Assert.Equal(InstanceStates.Running, vm.State);

        // The password logs the user in on the serial console, and the key is in that user's authorized_keys.
        // The prompts are not anchored at the end of a line: cloud-init, still running, writes to the same console
        // and its lines can land right after a prompt ("Password: [   62.37] cloud-init[389]: ...").
        await using var console = await ConsoleSocket.ConnectAsync(Env, "d1");
        await console.TypeAsync("\n");
        await console.WaitForAsync(new Regex(@"login: "), TimeSpan.FromMinutes(2));
        await console.TypeAsync("debian\n");
        await console.WaitForAsync(new Regex("Password: "), TimeSpan.FromMinutes(1));
        await console.TypeAsync(password + "\n");
        await console.WaitForAsync(new Regex(@"debian@\S+:~\$ "), TimeSpan.FromMinutes(2));
        await console.TypeAsync("cat ~/.ssh/authorized_keys; echo KEYS-$((40+2))\n");
        var listed = await console.WaitForAsync(new Regex(@"(ssh-ed25519 \S+ kumo-test)\s+KEYS-42"), TimeSpan.FromMinutes(1));
        Assert.Equal(publicKey, listed.Groups[1].Value);

        // And the key lets the user in over SSH, through a port forward to the guest's port 22 (from the node itself,
        // to the node's own address on the network: the forward's output-hook DNAT).
        // A public port of its own, so another test's kumod on this machine (with its own nftables table) cannot hold it.
        var port = Random.Shared.Next(6000, 7000).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Ok(await Kumo("port-forward", "add", "d1", "--public", port, "--to", "22"));
        var last = "";
        await KumoEnvironment.WaitUntilAsync(async () =>
        {
            var ssh = await Networking.NetworkHost.RunAsync("ssh", "-n", "-i", key, "-p", port, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "debian@10.88.213.1", "id -un; cat /etc/debian_version");
            last = ssh.Output;
            return ssh.ExitCode == 0;
        }, TimeSpan.FromMinutes(2), "ssh debian@ through the port forward");
        Assert.Matches(@"(?m)^debian\s*$", last);
        Assert.Matches(@"(?m)^12\.\d+", last);

        Ok(await Kumo("vm", "delete", "d1", "--force"));
    }

    [Fact]
    public async Task BuildBaseDebianContainer_RunsARealDebianUserland_AndFromDebianBuildsOffline()
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

        // FROM debian builds offline on the node, and the result runs.
        var dir = Path.Combine(Env.StateDir, "debapp");
        Directory.CreateDirectory(dir);
        await File.WriteAllTextAsync(Path.Combine(dir, "Containerfile"),
            "FROM debian\nRUN cp /etc/debian_version /built-from-debian\nCMD [\"cat\", \"/built-from-debian\"]\n");
        Ok(await Kumo("ct", "build", dir, "-t", "debapp"));
        Ok(await Kumo("ct", "run", "deb2", "--image", "debapp", "--no-wait"));
        await ApiClient.EventuallyAsync(async () => (await Kumo("ct", "logs", "deb2")).Out, l => Regex.IsMatch(l, @"^12\.\d+", RegexOptions.Multiline),
            TimeSpan.FromMinutes(3), "deb2 (built FROM debian) to print the version copied at build time");
        Ok(await Kumo("ct", "rm", "deb2", "--force"));
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
