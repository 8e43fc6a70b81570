using System.Diagnostics;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>
/// A libvirtd of the test's own: its socket in a temp dir, and its config, state, run, cache and log dirs bind-mounted
/// over /etc/libvirt, /var/lib/libvirt, /run/libvirt, ... inside a private mount namespace (a root libvirtd has those
/// paths compiled in). So it neither sees nor disturbs another libvirtd on the machine, and everything it keeps goes
/// with the temp dir. Its QEMU runs as root without a security driver or cgroups, like the agent's own QEMU.
/// </summary>
public sealed class PrivateLibvirtd : IAsyncDisposable
{
    private static readonly string[] Mounted = ["/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/cache/libvirt", "/var/log/libvirt"];

    private readonly Process _process;

    private PrivateLibvirtd(string dir, Process process)
    {
        Dir = dir;
        _process = process;
    }

    public string Dir { get; }

    public string Uri => $"qemu+unix:///system?socket={Path.Combine(Dir, "sock", "libvirt-sock")}";

    public string Log => File.Exists(Path.Combine(Dir, "libvirtd.log")) ? File.ReadAllText(Path.Combine(Dir, "libvirtd.log")) : "";

    public static async Task<PrivateLibvirtd> StartAsync()
    {
        // Short: the socket path must fit a sockaddr_un.
        var dir = Path.Combine("/tmp", "kumo-lv-" + Guid.NewGuid().ToString("n")[..8]);
        var script = new List<string>();
        foreach (var target in Mounted)
        {
            var source = Path.Combine(dir, "root", target.TrimStart('/'));
            Directory.CreateDirectory(source);
            // The mount point must exist; an empty directory is what the Debian packages would have made.
            Directory.CreateDirectory(target);
            script.Add($"mount --bind {source} {target}");
        }
        Directory.CreateDirectory(Path.Combine(dir, "sock"));
        var etc = Path.Combine(dir, "root", "etc", "libvirt");
        await File.WriteAllTextAsync(Path.Combine(etc, "libvirtd.conf"),
            $"""
            unix_sock_dir = "{Path.Combine(dir, "sock")}"
            unix_sock_rw_perms = "0700"
            auth_unix_rw = "none"
            auth_unix_ro = "none"
            """);
        // No DAC relabelling, cgroups, per-domain /dev namespace or virtlogd: none is there, or needed, in a test.
        await File.WriteAllTextAsync(Path.Combine(etc, "qemu.conf"),
            """
            user = "root"
            group = "root"
            dynamic_ownership = 0
            remember_owner = 0
            security_driver = "none"
            cgroup_controllers = [ ]
            namespaces = [ ]
            stdio_handler = "file"
            """);
        var psi = new ProcessStartInfo("unshare") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--mount", "--propagation", "private", "--", "sh", "-c",
                     string.Join(" && ", script) + $" && exec libvirtd --config {Path.Combine(etc, "libvirtd.conf")} > {Path.Combine(dir, "libvirtd.log")} 2>&1" })
            psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start unshare");
        var daemon = new PrivateLibvirtd(dir, process);
        try
        {
            await KumoEnvironment.WaitUntilAsync(async () =>
            {
                if (process.HasExited) throw new InvalidOperationException($"libvirtd exited ({process.ExitCode}): {await process.StandardError.ReadToEndAsync()}\n{daemon.Log}");
                return (await daemon.VirshAsync("list", "--all")).ExitCode == 0;
            }, TimeSpan.FromSeconds(30), "the private libvirtd to answer");
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
        return daemon;
    }

    public async Task<(int ExitCode, string Out, string Err)> VirshAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("virsh") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-q", "-c", Uri }.Concat(args)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await output, await error);
    }

    /// <summary>Domain name to state ("running", "shut off"), as `virsh list --all` shows them.</summary>
    public async Task<Dictionary<string, string>> DomainsAsync()
    {
        var (code, output, error) = await VirshAsync("list", "--all");
        if (code != 0) throw new InvalidOperationException("virsh list failed: " + error);
        var domains = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split(' ', 3, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (parts.Length == 3) domains[parts[1]] = parts[2];
        }
        return domains;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            foreach (var name in (await DomainsAsync()).Where(d => d.Value != "shut off").Select(d => d.Key))
                await VirshAsync("destroy", name);
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
