using System.Diagnostics;

namespace Kumo.IntegrationTests.Networking;

/// <summary>
/// "The outside world" for NAT and port-forward tests: a network namespace joined to the node by a veth pair, with
/// addresses from TEST-NET-2 (198.51.100.0/24, never routed on the internet). The node side is 198.51.100.1, the
/// outside 198.51.100.2 with its default route through the node. Removed (with anything run in it) on dispose.
/// </summary>
public sealed class OutsideNamespace : IAsyncDisposable
{
    public const string NodeAddress = "198.51.100.1";
    public const string Address = "198.51.100.2";

    private readonly List<Process> _processes = [];

    private OutsideNamespace(string name, string hostLink)
    {
        Name = name;
        HostLink = hostLink;
    }

    public string Name { get; }
    public string HostLink { get; }

    public static async Task<OutsideNamespace> CreateAsync()
    {
        var tag = Guid.NewGuid().ToString("N")[..6];
        var ns = new OutsideNamespace($"kumo-out-{tag}", $"kvo-{tag}");
        try
        {
            await MustAsync("ip", "netns", "add", ns.Name);
            await MustAsync("ip", "link", "add", ns.HostLink, "type", "veth", "peer", "name", "eth0", "netns", ns.Name);
            await MustAsync("ip", "addr", "add", $"{NodeAddress}/24", "dev", ns.HostLink);
            await MustAsync("ip", "link", "set", ns.HostLink, "up");
            await MustAsync("ip", "-n", ns.Name, "addr", "add", $"{Address}/24", "dev", "eth0");
            await MustAsync("ip", "-n", ns.Name, "link", "set", "eth0", "up");
            await MustAsync("ip", "-n", ns.Name, "link", "set", "lo", "up");
            await MustAsync("ip", "-n", ns.Name, "route", "add", "default", "via", NodeAddress);
            return ns;
        }
        catch
        {
            await ns.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a command inside the namespace and returns its exit code and output.</summary>
    public Task<(int ExitCode, string Output)> RunAsync(params string[] command) =>
        NetworkHost.RunAsync("ip", ["netns", "exec", Name, .. command]);

    /// <summary>Starts a long-running command inside the namespace (killed on dispose).</summary>
    public void Start(params string[] command)
    {
        var psi = new ProcessStartInfo("ip") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", Name }.Concat(command)) psi.ArgumentList.Add(a);
        _processes.Add(Process.Start(psi)!);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _processes)
        {
            try
            {
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
        await NetworkHost.RunAsync("ip", "link", "del", HostLink);
        await NetworkHost.RunAsync("ip", "netns", "del", Name);
    }

    private static async Task MustAsync(string file, params string[] args)
    {
        var (code, output) = await NetworkHost.RunAsync(file, args);
        if (code != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed: {output}");
    }
}
