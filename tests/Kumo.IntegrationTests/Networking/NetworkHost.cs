using System.Diagnostics;
using System.Text.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Networking;

/// <summary>What the host shows of an agent's tenant networks: bridges, taps, dnsmasq processes, nftables counters.</summary>
public static class NetworkHost
{
    public static List<string> Links(string prefix) =>
        Directory.GetDirectories("/sys/class/net").Select(Path.GetFileName).OfType<string>().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).ToList();

    /// <summary>The bridges recorded in an agent's state dir (so tests running side by side never see each other's).</summary>
    public static List<(string Id, string Bridge)> Recorded(string agentStateDir)
    {
        var dir = Path.Combine(agentStateDir, "networks");
        if (!Directory.Exists(dir)) return [];
        return Directory.GetDirectories(dir).Select(d => Path.Combine(d, "network.json")).Where(File.Exists)
            .Select(f => JsonDocument.Parse(File.ReadAllText(f)).RootElement)
            .Select(e => (e.GetProperty("id").GetString()!, e.GetProperty("bridge").GetString()!)).ToList();
    }

    /// <summary>Pids of dnsmasq processes whose command line contains <paramref name="marker"/>.</summary>
    public static List<int> Dnsmasq(string marker)
    {
        var pids = new List<int>();
        foreach (var d in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(d), out var pid)) continue;
            try
            {
                var cmd = File.ReadAllText(Path.Combine(d, "cmdline")).Replace('\0', ' ');
                if (cmd.StartsWith("dnsmasq ", StringComparison.Ordinal) && cmd.Contains(marker, StringComparison.Ordinal)) pids.Add(pid);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return pids;
    }

    public static async Task<(int ExitCode, string Output)> RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = await p.StandardOutput.ReadToEndAsync();
        var error = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, output + error);
    }

    public static async Task<bool> TableExistsAsync(string table) => (await RunAsync("nft", "list", "table", "inet", table)).ExitCode == 0;

    /// <summary>Packets counted by the rules of <paramref name="table"/> whose comment starts with <paramref name="comment"/>.</summary>
    public static async Task<long> CounterAsync(string table, string comment)
    {
        var (code, output) = await RunAsync("nft", "-j", "list", "table", "inet", table);
        if (code != 0) return 0;
        long packets = 0;
        foreach (var item in JsonDocument.Parse(output).RootElement.GetProperty("nftables").EnumerateArray())
        {
            if (!item.TryGetProperty("rule", out var rule)) continue;
            if (!rule.TryGetProperty("comment", out var c) || !c.GetString()!.StartsWith(comment, StringComparison.Ordinal)) continue;
            foreach (var expr in rule.GetProperty("expr").EnumerateArray())
            {
                if (expr.TryGetProperty("counter", out var counter)) packets += counter.GetProperty("packets").GetInt64();
            }
        }
        return packets;
    }

    /// <summary>
    /// Removes whatever an agent left when a test ends without deleting its VMs: dnsmasq, the taps (persistent tap
    /// devices outlive QEMU), bridges, its table.
    /// </summary>
    public static async Task CleanUpAsync(string agentStateDir, string? table)
    {
        foreach (var pid in Dnsmasq(agentStateDir))
        {
            try
            {
                Process.GetProcessById(pid).Kill();
            }
            catch (ArgumentException)
            {
            }
        }
        foreach (var (_, bridge) in Recorded(agentStateDir))
        {
            var ports = $"/sys/class/net/{bridge}/brif";
            foreach (var tap in Directory.Exists(ports) ? Directory.GetFileSystemEntries(ports).Select(Path.GetFileName) : [])
                await RunAsync("ip", "link", "del", tap!);
            await RunAsync("ip", "link", "del", bridge);
        }
        if (table is not null) await RunAsync("nft", "delete", "table", "inet", table);
    }

    /// <summary>The agent's nftables table for a node (the agent names it after a hash of the node id).</summary>
    public static string TableOf(string nodeId) =>
        "kumo_" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(nodeId)))[..10];

    /// <summary>Runs a shell command in a local guest through its serial console.</summary>
    public static Task<string> GuestRunAsync(KumoEnvironment env, Instance vm, string command) =>
        SerialConsole.RunAsync(Path.Combine(env.LocalInstancesDir, vm.Id, "serial.sock"), command, TimeSpan.FromSeconds(60));

    /// <summary>Waits until the guest's eth0 carries the address kumod's IPAM gave its first NIC (DHCP done).</summary>
    public static async Task WaitForAddressAsync(KumoEnvironment env, Instance vm)
    {
        var want = $"inet {vm.Nics[0].Address}/24";
        var last = "";
        await KumoEnvironment.WaitUntilAsync(async () => (last = await GuestRunAsync(env, vm, "ip -4 addr show eth0")).Contains(want, StringComparison.Ordinal),
            TimeSpan.FromSeconds(90), $"{vm.Name} to get {vm.Nics[0].Address} by DHCP (last: {last})");
    }
}
