using System.Globalization;

namespace Kumo.IntegrationTests.Networking;

/// <summary>
/// Machines for a multi-node network test, on one host: one network namespace per node, each joined by a veth to
/// a bridge in the host namespace that plays the physical LAN (198.51.100.64/26, part of TEST-NET-2). The host end
/// of the LAN is <see cref="ServerAddress"/> (where kumod listens for agents); node i is 198.51.100.(66 + i).
/// Removing it deletes the namespaces (and with them every link an agent made inside), the veths and the bridge.
/// </summary>
public sealed class Underlay : IAsyncDisposable
{
    public const string ServerAddress = "198.51.100.65";
    private const int Prefix = 26;

    private readonly string _tag = Guid.NewGuid().ToString("N")[..6];
    private readonly List<string> _namespaces = [];

    private Underlay()
    {
    }

    /// <summary>The host-side bridge that joins the nodes.</summary>
    public string Bridge => $"kvu-{_tag}";

    public IReadOnlyList<string> Namespaces => _namespaces;

    public static string NodeAddress(int i) => $"198.51.100.{(66 + i).ToString(CultureInfo.InvariantCulture)}";

    public static async Task<Underlay> CreateAsync(int nodes)
    {
        var u = new Underlay();
        try
        {
            await MustAsync("ip", "link", "add", u.Bridge, "type", "bridge");
            await MustAsync("ip", "addr", "add", $"{ServerAddress}/{Prefix}", "dev", u.Bridge);
            await MustAsync("ip", "link", "set", u.Bridge, "up");
            for (var i = 0; i < nodes; i++)
            {
                var ns = $"kumo-n{i}-{u._tag}";
                var hostEnd = $"kvu{i}-{u._tag}";
                await MustAsync("ip", "netns", "add", ns);
                u._namespaces.Add(ns);
                await MustAsync("ip", "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", ns);
                await MustAsync("ip", "link", "set", hostEnd, "master", u.Bridge);
                await MustAsync("ip", "link", "set", hostEnd, "up");
                await MustAsync("ip", "-n", ns, "addr", "add", $"{NodeAddress(i)}/{Prefix}", "dev", "eth0");
                await MustAsync("ip", "-n", ns, "link", "set", "eth0", "up");
                await MustAsync("ip", "-n", ns, "link", "set", "lo", "up");
            }
            return u;
        }
        catch
        {
            await u.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a command inside node <paramref name="i"/>'s namespace.</summary>
    public Task<(int ExitCode, string Output)> RunAsync(int i, params string[] command) =>
        NetworkHost.RunAsync("ip", ["netns", "exec", _namespaces[i], .. command]);

    /// <summary>Names of the links in node <paramref name="i"/>'s namespace that start with <paramref name="prefix"/>.</summary>
    public async Task<List<string>> LinksAsync(int i, string prefix)
    {
        var (_, output) = await NetworkHost.RunAsync("ip", "-n", _namespaces[i], "-o", "link", "show");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(':', 3)[1].Trim().Split('@')[0])
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var ns in _namespaces)
            await NetworkHost.RunAsync("ip", "netns", "del", ns);
        for (var i = 0; i < _namespaces.Count; i++)
            await NetworkHost.RunAsync("ip", "link", "del", $"kvu{i}-{_tag}");
        await NetworkHost.RunAsync("ip", "link", "del", Bridge);
    }

    private static async Task MustAsync(string file, params string[] args)
    {
        var (code, output) = await NetworkHost.RunAsync(file, args);
        if (code != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed: {output}");
    }
}
