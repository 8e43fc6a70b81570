using System.Net.Http.Json;
using System.Text.Json;
using Kumo.Agent.Networking;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Networking;

/// <summary>
/// One tenant network spanning two nodes: two kumo-agents on this machine, each (with its QEMU guests, taps,
/// bridges and dnsmasq) in its own network namespace, reaching kumod and each other over a veth LAN the test made.
/// </summary>
[Trait("Category", "Slow")]
public sealed class VxlanTests : IAsyncLifetime
{
    private Underlay _underlay = null!;
    private KumoEnvironment _env = null!;
    private readonly string[] _nodes = ["va", "vb"];

    public async Task InitializeAsync()
    {
        _underlay = await Underlay.CreateAsync(2);
        try
        {
            _env = await KumoEnvironment.StartWithAgentHostAsync(Underlay.ServerAddress);
            for (var i = 0; i < _nodes.Length; i++)
                await _env.StartAgentInAsync(_underlay.Namespaces[i], _nodes[i], cpus: 2, memory: "1G", "--vxlan-address", Underlay.NodeAddress(i));
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    public async Task DisposeAsync()
    {
        try
        {
            if (_env is not null)
            {
                await _env.DisposeAsync();
                // dnsmasq is daemonized (outside the agent's process tree) and keeps a namespace alive.
                foreach (var node in _nodes)
                {
                    foreach (var pid in NetworkHost.Dnsmasq(_env.AgentStateDir(node)))
                    {
                        try
                        {
                            System.Diagnostics.Process.GetProcessById(pid).Kill();
                        }
                        catch (ArgumentException)
                        {
                        }
                    }
                }
            }
        }
        finally
        {
            await _underlay.DisposeAsync();
        }
    }

    [Fact]
    public async Task NetworkSpanningTwoNodes_CarriesPingAndTcpBetweenTheirGuests_EachNodeServesOnlyItsOwnDhcp_AndTeardownLeavesNothing()
    {
        var nodes = await _env.Api.NodesAsync();
        Assert.Equal([Underlay.NodeAddress(0), Underlay.NodeAddress(1)], _nodes.Select(n => nodes.Single(x => x.Name == n).VxlanAddress));
        var nodeIds = _nodes.Select(n => nodes.Single(x => x.Name == n).Id).ToArray();
        Network lan;
        using (var r = await _env.Api.Http.PostAsJsonAsync("/api/v1/networks", new NetworksPost { Name = "span", Subnet = "10.77.1.0/24", DnsDomain = "span.internal" }, ApiClient.Json))
        {
            Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
            lan = (await r.Content.ReadFromJsonAsync<Network>(ApiClient.Json))!;
        }

        var vms = new Instance[2];
        for (var i = 0; i < 2; i++)
        {
            var op = await _env.CreateAsync($"g{i}", new { network = "span", node = _nodes[i] }, TimeSpan.FromMinutes(4));
            Assert.True(op.Status == OperationStatuses.Succeeded, $"g{i}: {op.Error}\n{_env.Diagnostics()}");
            vms[i] = (await _env.Api.GetAsync($"g{i}"))!;
            Assert.Equal(_nodes[i], vms[i].Node);
        }

        // Each node made a VXLAN device with the network's VNI on the network's bridge, flooding to the other node.
        var devices = new string[2];
        for (var i = 0; i < 2; i++)
        {
            devices[i] = NetworkNames.Vxlan(nodeIds[i], lan.Id);
            var device = devices[i];
            var other = Underlay.NodeAddress(1 - i);
            var node = i;
            var guestEntry = $"{vms[1 - i].Nics[0].Mac} dst {other} self permanent";
            await KumoEnvironment.WaitUntilAsync(async () => (await _underlay.RunAsync(node, "bridge", "fdb", "show", "dev", device)).Output.Contains(guestEntry, StringComparison.Ordinal),
                TimeSpan.FromSeconds(60), $"{_nodes[i]}'s {device} to send {vms[1 - i].Name}'s frames to {other}\n{_env.Diagnostics()}");
            var details = (await _underlay.RunAsync(i, "ip", "-d", "link", "show", device)).Output;
            Assert.Contains($"vxlan id {lan.Vni} local {Underlay.NodeAddress(i)}", details, StringComparison.Ordinal);
            Assert.Contains("dstport 4789 nolearning", details, StringComparison.Ordinal);
            Assert.Contains($"master {NetworkNames.Bridge(nodeIds[i], lan.Id)}", details, StringComparison.Ordinal);
            // Broadcasts and unknown MACs are flooded to the other node; the other node's guest has its own entry.
            var fdb = (await _underlay.RunAsync(i, "bridge", "fdb", "show", "dev", device)).Output;
            Assert.Contains($"00:00:00:00:00:00 dst {other} self permanent", fdb, StringComparison.Ordinal);
        }

        // DHCP: each guest gets its IPAM address from its own node's dnsmasq; the other node's never leased to it.
        for (var i = 0; i < 2; i++)
            await WaitForAddressAsync(i, vms[i]);
        for (var i = 0; i < 2; i++)
        {
            var leases = await File.ReadAllTextAsync(Path.Combine(_env.AgentStateDir(_nodes[i]), "networks", lan.Id, "leases"));
            Assert.Contains(vms[i].Nics[0].Mac, leases, StringComparison.Ordinal);
            Assert.DoesNotContain(vms[1 - i].Nics[0].Mac, leases, StringComparison.Ordinal);
        }

        // Guest to guest across the nodes: by address, by name and by name under the DNS domain.
        var ping = await GuestAsync(0, vms[0], $"ping -c 3 -W 5 {vms[1].Nics[0].Address}; ping -c 2 -W 5 g1; ping -c 1 -W 5 g1.span.internal");
        Assert.Contains($"PING g1 ({vms[1].Nics[0].Address})", ping, StringComparison.Ordinal);
        Assert.Contains($"PING g1.span.internal ({vms[1].Nics[0].Address})", ping, StringComparison.Ordinal);
        Assert.DoesNotContain("100% packet loss", ping, StringComparison.Ordinal);

        // TCP across the nodes: an HTTP server in g1, asked by g0 (busybox wget segfaults on Debian 12: nc speaks HTTP).
        var token = Guid.NewGuid().ToString("N");
        await GuestAsync(1, vms[1], $"mkdir -p /tmp/www && echo {token} > /tmp/www/t && httpd -p 8080 -h /tmp/www && echo started");
        var last = "";
        await KumoEnvironment.WaitUntilAsync(async () => (last = await GuestAsync(0, vms[0], $"printf 'GET /t HTTP/1.0\\r\\n\\r\\n' | nc -w 5 g1 8080")).Contains(token, StringComparison.Ordinal),
            TimeSpan.FromSeconds(60), $"g0 to fetch the token from g1 over TCP (last: {last})");

        // The gateway address is on both nodes' bridges; each guest resolves it to its own node's bridge only, and its
        // ARP broadcast for the gateway is dropped (and counted) where it would enter the VXLAN device.
        for (var i = 0; i < 2; i++)
        {
            var table = NetworkNames.NftTable(nodeIds[i]);
            var before = await BridgeCounterAsync(i, table, "kumo-vxlan-gateway");
            var bridgeMac = (await _underlay.RunAsync(i, "cat", $"/sys/class/net/{NetworkNames.Bridge(nodeIds[i], lan.Id)}/address")).Output.Trim();
            var neigh = await GuestAsync(i, vms[i], $"ip neigh flush dev eth0; ping -c 1 -W 5 {lan.Gateway} >/dev/null; ip neigh show {lan.Gateway}");
            Assert.Contains($"lladdr {bridgeMac}", neigh, StringComparison.Ordinal);
            var counted = await BridgeCounterAsync(i, table, "kumo-vxlan-gateway") - before;
            Assert.True(counted >= 1, $"{_nodes[i]} counted no gateway ARP at its VXLAN port:\n{(await _underlay.RunAsync(i, "nft", "list", "table", "bridge", table)).Output}");
        }

        // The peer goes away with its last guest: node va stops flooding to vb and removes its VXLAN device.
        await DeleteAsync("g1");
        await KumoEnvironment.WaitUntilAsync(async () => (await _underlay.LinksAsync(0, NetworkNames.VxlanPrefix)).Count == 0,
            TimeSpan.FromSeconds(60), "va to remove its VXLAN device once vb has no guest on the network");
        await KumoEnvironment.WaitUntilAsync(async () => (await _underlay.LinksAsync(1, "k")).Count == 0,
            TimeSpan.FromSeconds(60), "vb to remove its bridge, tap and VXLAN device");
        Assert.Single(await _underlay.LinksAsync(0, NetworkNames.BridgePrefix));
        await DeleteAsync("g0");
        for (var i = 0; i < 2; i++)
        {
            var node = i;
            await KumoEnvironment.WaitUntilAsync(async () => (await _underlay.LinksAsync(node, "k")).Count == 0,
                TimeSpan.FromSeconds(60), $"{_nodes[i]} to remove every bridge, tap and VXLAN device");
            Assert.Empty(NetworkHost.Dnsmasq(_env.AgentStateDir(_nodes[i])));
        }
    }

    private Task<string> GuestAsync(int node, Instance vm, string command) =>
        SerialConsole.RunAsync(Path.Combine(_env.AgentStateDir(_nodes[node]), "instances", vm.Id, "serial.sock"), command, TimeSpan.FromSeconds(60));

    private async Task WaitForAddressAsync(int node, Instance vm)
    {
        var want = $"inet {vm.Nics[0].Address}/24";
        var last = "";
        await KumoEnvironment.WaitUntilAsync(async () => (last = await GuestAsync(node, vm, "ip -4 addr show eth0")).Contains(want, StringComparison.Ordinal),
            TimeSpan.FromSeconds(120), $"{vm.Name} to get {vm.Nics[0].Address} by DHCP (last: {last})");
    }

    private async Task DeleteAsync(string name)
    {
        using var r = await _env.Api.Http.DeleteAsync($"/api/v1/instances/{name}?force=true");
        Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
        var op = await _env.Api.WaitAsync((await r.Content.ReadFromJsonAsync<Operation>(ApiClient.Json))!);
        Assert.True(op.Status == OperationStatuses.Succeeded, $"delete {name}: {op.Error}");
    }

    /// <summary>Packets counted by rules of a node's bridge-family table whose comment starts with <paramref name="comment"/>.</summary>
    private async Task<long> BridgeCounterAsync(int node, string table, string comment)
    {
        var (code, output) = await _underlay.RunAsync(node, "nft", "-j", "list", "table", "bridge", table);
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
}
