using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Networking;

/// <summary>
/// Three real TCG guests on real bridges with real dnsmasq and nftables: two on one project's network, one on another
/// project's network with an overlapping-free subnet. Everything runs on bridges this test's agent made.
/// </summary>
[Trait("Category", "Slow")]
public sealed class TenantNetworkTests : IAsyncLifetime
{
    private KumoEnvironment _env = null!;
    private string? _table;

    private string AgentDir => Path.Combine(_env.StateDir, "agent");

    public async Task InitializeAsync() => _env = await KumoEnvironment.StartAsync();

    public async Task DisposeAsync()
    {
        try
        {
            await NetworkHost.CleanUpAsync(AgentDir, _table);
        }
        finally
        {
            await _env.DisposeAsync();
        }
    }

    /// <summary>
    /// The bridge (the guests' gateway) has a MAC of its own, set explicitly, and keeps it when a port with a lower MAC
    /// joins. Left to the kernel it took the lowest port MAC, so a guest joining moved the gateway's MAC and the other
    /// guests' DNS to it timed out until their ARP entries expired (a cluster test saw 45 s of that after a scale-up).
    /// </summary>
    private static async Task AssertBridgeKeepsItsMacAsync(string bridge)
    {
        var mac = File.ReadAllText($"/sys/class/net/{bridge}/address").Trim();
        Assert.Equal("3", File.ReadAllText($"/sys/class/net/{bridge}/addr_assign_type").Trim()); // set, not inherited
        Assert.StartsWith("02:", mac, StringComparison.Ordinal);
        const string port = "kmactest0";
        try
        {
            Assert.Equal(0, (await NetworkHost.RunAsync("ip", "tuntap", "add", "dev", port, "mode", "tap")).ExitCode);
            Assert.Equal(0, (await NetworkHost.RunAsync("ip", "link", "set", port, "address", "00:00:00:00:00:01")).ExitCode);
            Assert.Equal(0, (await NetworkHost.RunAsync("ip", "link", "set", port, "master", bridge)).ExitCode);
            Assert.Equal(mac, File.ReadAllText($"/sys/class/net/{bridge}/address").Trim());
        }
        finally
        {
            await NetworkHost.RunAsync("ip", "link", "del", port);
        }
    }

    [Fact]
    public async Task GuestsOnOneNetwork_ReachEachOtherByName_OtherProjectIsDropped_AndDeleteLeavesNothing()
    {
        var node = (await _env.Api.NodesAsync()).Single(n => n.Name == "local");
        _table = NetworkHost.TableOf(node.Id);
        using (var p = await _env.Api.Http.PostAsJsonAsync("/api/v1/projects", new ProjectsPost { Name = "other" }))
            p.EnsureSuccessStatusCode();
        await CreateNetworkAsync(null, new NetworksPost { Name = "lan", Subnet = "10.213.0.0/24", DnsDomain = "lab.internal" });
        await CreateNetworkAsync("other", new NetworksPost { Name = "lan", Subnet = "10.214.0.0/24" });

        foreach (var name in new[] { "a", "b" })
        {
            var op = await _env.CreateAsync(name, new { network = "lan" });
            Assert.True(op.Status == OperationStatuses.Succeeded, $"{name}: {op.Error}\n{_env.Diagnostics()}");
        }
        var c = await CreateInProjectAsync("other", "c", "lan");
        Assert.True(c.Status == OperationStatuses.Succeeded, $"c: {c.Error}\n{_env.Diagnostics()}");

        var a = (await _env.Api.GetAsync("a"))!;
        var b = (await _env.Api.GetAsync("b"))!;
        var cVm = (await _env.Api.Http.GetFromJsonAsync<Instance>("/api/v1/instances/c?project=other", ApiClient.Json))!;
        Assert.NotEqual(a.Nics[0].Address, b.Nics[0].Address);

        // DHCP: each guest gets exactly the address kumod's IPAM gave it.
        foreach (var vm in new[] { a, b, cVm })
            await NetworkHost.WaitForAddressAsync(_env, vm);

        var byName = await NetworkHost.GuestRunAsync(_env, a, "ping -c 2 -W 5 b; ping -c 1 -W 5 b.lab.internal");
        Assert.Contains($"PING b ({b.Nics[0].Address})", byName, StringComparison.Ordinal);
        Assert.Contains($"PING b.lab.internal ({b.Nics[0].Address})", byName, StringComparison.Ordinal);
        Assert.True(!byName.Contains("100% packet loss", StringComparison.Ordinal) && byName.Contains(" 0% packet loss", StringComparison.Ordinal), byName);

        // The other project's guest cannot resolve the names (its dnsmasq knows only its own network) ...
        Assert.DoesNotContain(a.Nics[0].Address, await NetworkHost.GuestRunAsync(_env, cVm, "nslookup a 10.214.0.1 2>&1; nslookup a.lab.internal 10.214.0.1 2>&1"), StringComparison.Ordinal);
        // ... and packets it routes at them through the node are dropped by the isolation rule, counted by nftables.
        var before = await NetworkHost.CounterAsync(_table, "kumo-isolate");
        var routed = await NetworkHost.GuestRunAsync(_env, cVm, $"ip route add 10.213.0.0/24 via 10.214.0.1; ping -c 3 -W 1 {a.Nics[0].Address}");
        Assert.Contains("100% packet loss", routed, StringComparison.Ordinal);
        var counted = await NetworkHost.CounterAsync(_table, "kumo-isolate") - before;
        // At least one of the pings reached the isolation rule and was dropped there (under TCG not every echo the
        // guest reports as sent reaches the node within the ping's timeout, so the count is not exactly 3).
        Assert.True(counted >= 1, $"the isolation rule counted {counted} packets; guest said:\n{routed}\n{await NetworkHost.RunAsync("nft", "list", "table", "inet", _table)}");

        // One dnsmasq per network, each kept by its network's directory in the agent's state dir.
        var recorded = NetworkHost.Recorded(AgentDir);
        Assert.Equal(2, recorded.Count);
        foreach (var (id, bridge) in recorded)
        {
            Assert.Single(NetworkHost.Dnsmasq(Path.Combine(AgentDir, "networks", id)));
            Assert.True(Directory.Exists($"/sys/class/net/{bridge}"), bridge);
            Assert.Contains(Directory.GetFileSystemEntries($"/sys/class/net/{bridge}/brif"), e => Path.GetFileName(e).StartsWith("kt-", StringComparison.Ordinal));
            await AssertBridgeKeepsItsMacAsync(bridge);
        }

        await DeleteInProjectAsync(null, "a");
        await DeleteInProjectAsync(null, "b");
        await DeleteInProjectAsync("other", "c");

        await KumoEnvironment.WaitUntilAsync(async () => NetworkHost.Recorded(AgentDir).Count == 0 && !await NetworkHost.TableExistsAsync(_table),
            TimeSpan.FromSeconds(60), "the agent to tear both networks down");
        foreach (var (_, bridge) in recorded)
            Assert.False(Directory.Exists($"/sys/class/net/{bridge}"), $"bridge {bridge} is left");
        Assert.Empty(NetworkHost.Dnsmasq(AgentDir));
        foreach (var vm in new[] { a, b, cVm })
            Assert.False(Directory.Exists($"/sys/class/net/kt-{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(vm.Id + "/0")))[..11]}"), $"tap of {vm.Name} is left");

        // Unused now, the networks can go; kumod keeps no address behind.
        using (var del = await _env.Api.Http.DeleteAsync("/api/v1/networks/lan"))
            Assert.Equal(System.Net.HttpStatusCode.NoContent, del.StatusCode);
        using (var del = await _env.Api.Http.DeleteAsync("/api/v1/networks/lan?project=other"))
            Assert.Equal(System.Net.HttpStatusCode.NoContent, del.StatusCode);
    }

    private async Task CreateNetworkAsync(string? project, NetworksPost body)
    {
        using var r = await _env.Api.Http.PostAsJsonAsync(project is null ? "/api/v1/networks" : $"/api/v1/networks?project={project}", body, ApiClient.Json);
        Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
    }

    private async Task<Operation> CreateInProjectAsync(string project, string name, string network)
    {
        using var r = await _env.Api.Http.PostAsJsonAsync($"/api/v1/instances?project={project}",
            new InstancesPost { Name = name, Image = "tiny", Cpus = 1, Memory = "128M", Disk = "64M", Network = network }, ApiClient.Json);
        Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
        return await _env.Api.WaitAsync((await r.Content.ReadFromJsonAsync<Operation>(ApiClient.Json))!);
    }

    private async Task DeleteInProjectAsync(string? project, string name)
    {
        using var r = await _env.Api.Http.DeleteAsync($"/api/v1/instances/{name}?force=true" + (project is null ? "" : $"&project={project}"));
        Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
        var op = await _env.Api.WaitAsync((await r.Content.ReadFromJsonAsync<Operation>(ApiClient.Json))!);
        Assert.True(op.Status == OperationStatuses.Succeeded, $"delete {name}: {op.Error}");
    }
}
