using System.Globalization;
using System.Text;
using System.Text.Json;
using Kumo.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Networking;

/// <summary>A guest NIC as QEMU sees it: the tap it opens and the MAC kumod's IPAM assigned.</summary>
public sealed record VmNic(string Tap, string Mac);

/// <summary>What this node made for one network, written before anything is made so a crash leaves a record to clean up.</summary>
public sealed record NetworkRecord(string Id, string Name, string Bridge, string Subnet, string Gateway, bool Nat, string? DnsDomain);

/// <summary>
/// Realizes tenant networks on this node: per network a Linux bridge holding the gateway address, a dnsmasq
/// (DHCP for exactly the MAC→address pairs IPAM assigned, DNS for the guests' names, nothing forwarded off the
/// machine) and nftables rules in this agent's own table that drop forwarding between Kumo bridges, keep networks
/// without NAT off the host's other links, and masquerade those with NAT. Guests attach through taps.
/// Everything is found again from the state directory after an agent restart: a live dnsmasq is adopted, never
/// started twice; a network no guest of this node uses any more is torn down.
/// </summary>
public sealed partial class NetworkManager(string stateDir, ILogger<NetworkManager> logger, TimeSpan resync)
{
    private static readonly JsonSerializerOptions RecordJson = new(JsonSerializerDefaults.Web) { WriteIndented = true };
    private readonly SemaphoreSlim _lock = new(1, 1);

    // The last script applied and how nft listed its tables right after (under _lock).
    private (string? Script, string? Listing) _appliedNft;
    private readonly SemaphoreSlim _kick = new(0, 1);
    private volatile IReadOnlyDictionary<string, DesiredNetwork> _desired = new Dictionary<string, DesiredNetwork>();
    private volatile bool _hasDesired;

    public string NetworksDir { get; } = Path.Combine(stateDir, "networks");

    /// <summary>Set once the node is registered: bridge and table names derive from it.</summary>
    public string? NodeId { get; set; }

    public string TableName => NetworkNames.NftTable(NodeId ?? throw new InvalidOperationException("the node is not registered yet"));

    /// <summary>This node's underlay address (agent --vxlan-address); null keeps every network local to this node.</summary>
    public string? VxlanAddress { get; init; }

    public string VxlanDevice(string networkId) =>
        NetworkNames.Vxlan(NodeId ?? throw new InvalidOperationException("the node is not registered yet"), networkId);

    private string DirOf(string id) => Path.Combine(NetworksDir, id);
    private string RecordFile(string id) => Path.Combine(DirOf(id), "network.json");
    private string PidFile(string id) => Path.Combine(DirOf(id), "dnsmasq.pid");
    private string DhcpHostsFile(string id) => Path.Combine(DirOf(id), "dhcp-hosts");
    private string HostsFile(string id) => Path.Combine(DirOf(id), "hosts");
    public string LeasesFile(string id) => Path.Combine(DirOf(id), "leases");

    public void SetDesired(IEnumerable<DesiredNetwork> networks)
    {
        _desired = networks.ToDictionary(n => n.Id, StringComparer.Ordinal);
        _hasDesired = true;
        Kick();
    }

    public void Kick()
    {
        try
        {
            if (_kick.CurrentCount == 0) _kick.Release();
        }
        catch (SemaphoreFullException)
        {
        }
    }

    /// <summary>Supervises until the agent stops: dnsmasq kept alive, host lists current, unused networks removed.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _kick.WaitAsync(resync, ct);
                if (_hasDesired && NodeId is not null) await SyncAsync(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException)
            {
                LogSyncFailed(e);
            }
        }
    }

    /// <summary>Makes sure the instance's networks exist here and its taps are on their bridges; returns the NICs for QEMU.</summary>
    public async Task<IReadOnlyList<VmNic>> AttachAsync(string instanceId, IReadOnlyList<InstanceNic> nics, CancellationToken ct)
    {
        if (nics.Count == 0) return [];
        await _lock.WaitAsync(ct);
        try
        {
            var result = new List<VmNic>();
            for (var i = 0; i < nics.Count; i++)
            {
                var nic = nics[i];
                var network = _desired.GetValueOrDefault(nic.NetworkId)
                    ?? throw new InvalidOperationException($"network {nic.NetworkId} of this instance is not in the node's desired state");
                var record = await EnsureNetworkAsync(network, ct);
                var tap = NetworkNames.Tap(instanceId, i);
                if (!LinkExists(tap))
                    await IpAsync(ct, "tuntap", "add", "mode", "tap", "name", tap);
                await IpAsync(ct, "link", "set", tap, "master", record.Bridge);
                await IpAsync(ct, "link", "set", tap, "up");
                result.Add(new VmNic(tap, nic.Mac));
            }
            await ApplyNftAsync(ct);
            return result;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Removes an instance's taps (its delete); the network goes at the next pass if nothing else uses it.</summary>
    public async Task DetachAsync(string instanceId, CancellationToken ct)
    {
        for (var i = 0; i < 8; i++)
        {
            var tap = NetworkNames.Tap(instanceId, i);
            if (LinkExists(tap)) await IpAsync(ct, "link", "del", tap);
        }
        Kick();
    }

    /// <summary>Brings every realized network in line with the desired state; tears down the ones nobody here needs.</summary>
    public async Task SyncAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            var desired = _desired;
            foreach (var record in Records())
            {
                if (desired.TryGetValue(record.Id, out var network))
                {
                    await EnsureNetworkAsync(network, ct);
                }
                else if (!Ports(record.Bridge).Any(p => p.StartsWith(NetworkNames.TapPrefix, StringComparison.Ordinal)))
                {
                    // No instance of this node uses it, and no tap is left on it (deletes remove taps first).
                    await TearDownAsync(record, ct);
                }
            }
            await ApplyNftAsync(ct);
        }
        finally
        {
            _lock.Release();
        }
    }

    public IReadOnlyList<NetworkRecord> Records()
    {
        if (!Directory.Exists(NetworksDir)) return [];
        var records = new List<NetworkRecord>();
        foreach (var dir in Directory.GetDirectories(NetworksDir))
        {
            var file = Path.Combine(dir, "network.json");
            if (!File.Exists(file)) continue;
            if (JsonSerializer.Deserialize<NetworkRecord>(File.ReadAllText(file), RecordJson) is { } r) records.Add(r);
        }
        return records.OrderBy(r => r.Bridge, StringComparer.Ordinal).ToList();
    }

    /// <summary>The bridge, its address, the host lists and a live dnsmasq; idempotent, so it also repairs.</summary>
    private async Task<NetworkRecord> EnsureNetworkAsync(DesiredNetwork n, CancellationToken ct)
    {
        var subnet = Cidr.Parse(n.Subnet);
        var existing = Records();
        // Two bridges with overlapping subnets would confuse the host's routing: refuse rather than misroute.
        if (existing.FirstOrDefault(r => r.Id != n.Id && Cidr.Parse(r.Subnet).Overlaps(subnet)) is { } clash)
            throw new InvalidOperationException(
                $"network '{n.Name}' ({n.Subnet}) overlaps network '{clash.Name}' ({clash.Subnet}) already on this node; this node cannot host both");
        var record = existing.FirstOrDefault(r => r.Id == n.Id)
            ?? new NetworkRecord(n.Id, n.Name, NetworkNames.Bridge(NodeId!, n.Id), subnet.ToString(), n.Gateway, n.Nat, NullIfEmpty(n.DnsDomain));
        record = record with { Nat = n.Nat, DnsDomain = NullIfEmpty(n.DnsDomain), Name = n.Name };
        Directory.CreateDirectory(DirOf(n.Id));
        await WriteIfChangedAsync(RecordFile(n.Id), JsonSerializer.Serialize(record, RecordJson), ct);

        if (!LinkExists(record.Bridge))
        {
            await IpAsync(ct, "link", "add", "name", record.Bridge, "type", "bridge");
            LogBridgeCreated(record.Bridge, n.Name, record.Subnet);
        }
        var mac = NetworkNames.BridgeMac(record.Bridge);
        if (!string.Equals(LinkAddress(record.Bridge), mac, StringComparison.OrdinalIgnoreCase))
            await IpAsync(ct, "link", "set", record.Bridge, "address", mac);
        await IpAsync(ct, "addr", "replace", $"{record.Gateway}/{subnet.Prefix.ToString(CultureInfo.InvariantCulture)}", "dev", record.Bridge);
        await IpAsync(ct, "link", "set", record.Bridge, "up");
        await EnableForwardingAsync(ct);

        var hostsChanged = await WriteIfChangedAsync(DhcpHostsFile(n.Id), DhcpHosts(n), ct);
        hostsChanged |= await WriteIfChangedAsync(HostsFile(n.Id), Hosts(n), ct);
        var pid = DnsmasqPid(n.Id);
        if (pid is null)
            await StartDnsmasqAsync(record, ct);
        else if (hostsChanged)
            await ProcessRunner.RunAsync("kill", ["-HUP", pid.Value.ToString(CultureInfo.InvariantCulture)], ct); // dnsmasq rereads both host files
        await EnsureVxlanAsync(record, n, ct);
        return record;
    }

    /// <summary>
    /// The network's VXLAN device while other nodes realize it too: enslaved to the bridge, learning off, and one
    /// all-zeros FDB entry per peer so broadcasts and unknown unicast are copied to every peer (head-end
    /// replication, no multicast needed in the underlay), plus one entry per guest on another node, from kumod's
    /// placement, so unicast to it goes to its node alone. Its MTU is 1500 like the guests' NICs: the underlay
    /// fragments the outer packets if its own MTU is below 1550, instead of the bridge dropping full-size frames.
    /// Without peers (or with VXLAN off) the device is removed.
    /// </summary>
    private async Task EnsureVxlanAsync(NetworkRecord record, DesiredNetwork n, CancellationToken ct)
    {
        var device = VxlanDevice(n.Id);
        var peers = VxlanAddress is null || n.Vni == 0 ? [] : n.VxlanPeers.Distinct(StringComparer.Ordinal).ToList();
        if (peers.Count == 0)
        {
            if (LinkExists(device))
            {
                await IpAsync(ct, "link", "del", device);
                LogVxlanRemoved(device, n.Name);
            }
            return;
        }
        if (!LinkExists(device))
        {
            await IpAsync(ct, "link", "add", device, "mtu", "1500", "type", "vxlan", "id", n.Vni.ToString(CultureInfo.InvariantCulture),
                "local", VxlanAddress!, "dstport", Vxlan.Port.ToString(CultureInfo.InvariantCulture), "nolearning");
            LogVxlanCreated(device, n.Name, n.Vni);
        }
        await IpAsync(ct, "link", "set", device, "master", record.Bridge);
        await IpAsync(ct, "link", "set", device, "up");
        var fdb = await FdbAsync(device, ct);
        var current = ParseFloodPeers(fdb);
        foreach (var peer in peers.Except(current, StringComparer.Ordinal))
        {
            await BridgeAsync(ct, "fdb", "append", "00:00:00:00:00:00", "dev", device, "dst", peer);
            LogPeerAdded(n.Name, peer);
        }
        foreach (var gone in current.Except(peers, StringComparer.Ordinal))
        {
            await BridgeAsync(ct, "fdb", "del", "00:00:00:00:00:00", "dev", device, "dst", gone);
            LogPeerRemoved(n.Name, gone);
        }
        // Guests on other nodes: their frames go to their node alone (flooding stays for broadcasts and unknown MACs).
        var wanted = n.Hosts.Where(h => peers.Contains(h.VxlanPeer, StringComparer.Ordinal))
            .ToDictionary(h => h.Mac.ToLowerInvariant(), h => h.VxlanPeer, StringComparer.Ordinal);
        var placed = ParseGuestEntries(fdb);
        foreach (var (mac, peer) in wanted)
        {
            if (placed.GetValueOrDefault(mac) != peer)
                await BridgeAsync(ct, "fdb", "replace", mac, "dev", device, "dst", peer, "self", "permanent");
        }
        foreach (var mac in placed.Keys.Except(wanted.Keys, StringComparer.Ordinal))
            await BridgeAsync(ct, "fdb", "del", mac, "dev", device, "self");
    }

    private static async Task<string> FdbAsync(string device, CancellationToken ct)
    {
        var r = await ProcessRunner.RunAsync("bridge", ["fdb", "show", "dev", device], ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"bridge fdb show dev {device} failed: {r.Stderr.Trim()}");
        return r.Stdout;
    }

    /// <summary>The VXLAN device's own entries for single MACs (MAC → the node it is sent to); bridge-learned lines have no dst.</summary>
    internal static Dictionary<string, string> ParseGuestEntries(string fdb) =>
        fdb.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 3 && f[0] != "00:00:00:00:00:00" && f[1] == "dst")
            .GroupBy(f => f[0], StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.First()[2], StringComparer.Ordinal);

    /// <summary>The peers a VXLAN device floods to: its all-zeros FDB entries.</summary>
    public static async Task<IReadOnlyList<string>> FloodPeersAsync(string device, CancellationToken ct) =>
        ParseFloodPeers(await FdbAsync(device, ct));

    internal static IReadOnlyList<string> ParseFloodPeers(string fdb) =>
        fdb.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 3 && f[0] == "00:00:00:00:00:00" && f[1] == "dst")
            .Select(f => f[2]).Distinct(StringComparer.Ordinal).ToList();

    private async Task StartDnsmasqAsync(NetworkRecord r, CancellationToken ct)
    {
        var subnet = Cidr.Parse(r.Subnet);
        var dir = DirOf(r.Id);
        File.Delete(PidFile(r.Id));
        var args = new List<string>
        {
            "--conf-file=/dev/null",
            $"--pid-file={PidFile(r.Id)}",
            $"--interface={r.Bridge}",
            "--bind-interfaces",
            "--except-interface=lo",
            $"--listen-address={r.Gateway}",
            // Names are answered from the hosts list only; nothing is forwarded off the machine.
            "--no-resolv",
            "--no-hosts",
            $"--addn-hosts={HostsFile(r.Id)}",
            // Static: only MACs IPAM assigned get an address, and exactly the one it assigned.
            $"--dhcp-range={Cidr.Format(subnet.Network)},static,{subnet.MaskString},1h",
            $"--dhcp-hostsfile={DhcpHostsFile(r.Id)}",
            $"--dhcp-leasefile={LeasesFile(r.Id)}",
            "--dhcp-authoritative",
            $"--dhcp-option=option:dns-server,{r.Gateway}",
            $"--log-facility={Path.Combine(dir, "dnsmasq.log")}",
            // The lease file lives in the agent's state directory, which the unprivileged default user cannot write.
            "--user=root",
        };
        // Without NAT there is no way out through the node: do not offer a default route.
        if (!r.Nat) args.Add("--dhcp-option=option:router");
        if (r.DnsDomain is { } domain)
            args.AddRange([$"--domain={domain}", $"--local=/{domain}/", "--expand-hosts"]);
        var result = await ProcessRunner.RunAsync("dnsmasq", args, ct);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"dnsmasq for network '{r.Name}' failed to start: {result.Stderr.Trim()}");
        LogDnsmasqStarted(r.Name, r.Bridge);
    }

    /// <summary>The pid of this network's dnsmasq when it is alive (its command line names this network's directory).</summary>
    public int? DnsmasqPid(string id)
    {
        var file = PidFile(id);
        if (!File.Exists(file) || !int.TryParse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture, out var pid)) return null;
        return ProcessRunner.IsAlive(pid, DirOf(id)) ? pid : null;
    }

    private async Task TearDownAsync(NetworkRecord r, CancellationToken ct)
    {
        if (DnsmasqPid(r.Id) is { } pid)
        {
            await ProcessRunner.RunAsync("kill", ["-TERM", pid.ToString(CultureInfo.InvariantCulture)], ct);
            if (!await ProcessRunner.WaitExitAsync(pid, TimeSpan.FromSeconds(5), ct))
                await ProcessRunner.RunAsync("kill", ["-KILL", pid.ToString(CultureInfo.InvariantCulture)], ct);
        }
        var vxlan = VxlanDevice(r.Id);
        if (LinkExists(vxlan)) await IpAsync(ct, "link", "del", vxlan);
        if (LinkExists(r.Bridge)) await IpAsync(ct, "link", "del", r.Bridge);
        // Rename first: a crash half-way never leaves a directory that still looks like a live network.
        var trash = Path.Combine(NetworksDir, $".deleting-{r.Id}-{Guid.NewGuid():N}");
        Directory.Move(DirOf(r.Id), trash);
        Directory.Delete(trash, recursive: true);
        LogTornDown(r.Name, r.Bridge);
    }

    /// <summary>Rewrites this agent's nftables table in one transaction (or removes it when no network is left).</summary>
    private async Task ApplyNftAsync(CancellationToken ct)
    {
        var desired = _desired;
        var forwards = desired.ToDictionary(d => d.Key, d => (IReadOnlyList<PortForwardRule>)d.Value.Forwards.ToList(), StringComparer.Ordinal);
        var records = Records();
        var vxlans = records.Select(r => (r.Id, Device: VxlanDevice(r.Id))).Where(v => LinkExists(v.Device))
            .ToDictionary(v => v.Id, v => v.Device, StringComparer.Ordinal);
        var peers = VxlanAddress is null ? null : desired.Values.SelectMany(d => d.VxlanPeers).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var script = NftScript(TableName, records, forwards, vxlans, peers);
        // Replacing the tables resets every rule's counter, which operators and tests read: a pass that would write the
        // same rules again leaves them alone, unless they were changed behind our back since (compared without
        // counters, so a changed or flushed rule is put back as before).
        Directory.CreateDirectory(NetworksDir);
        if (script == _appliedNft.Script && _appliedNft.Listing is not null && await ListNftAsync(script, ct) == _appliedNft.Listing)
            return;
        var file = Path.Combine(NetworksDir, "nftables.nft");
        await File.WriteAllTextAsync(file, script, ct);
        var r = await ProcessRunner.RunAsync("nft", ["-f", file], ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"nft -f {file} failed: {r.Stderr.Trim()}");
        _appliedNft = (script, await ListNftAsync(script, ct));
    }

    /// <summary>The tables <paramref name="script"/> creates, as nft lists them without counters; null if one is missing.</summary>
    private async Task<string?> ListNftAsync(string script, CancellationToken ct)
    {
        var lists = script.Split('\n').Where(l => l.StartsWith("table ", StringComparison.Ordinal) && l.EndsWith('{'))
            .Select(l => "list " + l[..^1].Trim()).Distinct(StringComparer.Ordinal).ToList();
        if (lists.Count == 0)
            return null;
        var file = Path.Combine(NetworksDir, "nftables-list.nft");
        await File.WriteAllTextAsync(file, string.Join('\n', lists) + "\n", ct);
        var r = await ProcessRunner.RunAsync("nft", ["-s", "-f", file], ct);
        return r.ExitCode == 0 ? r.Stdout : null;
    }

    /// <summary>
    /// The whole table, replaced atomically ("table; delete table; table {…}" in one nft transaction). Comments name
    /// each rule's purpose so tests and operators can read its counters.
    /// </summary>
    internal static string NftScript(string table, IReadOnlyList<NetworkRecord> networks,
        IReadOnlyDictionary<string, IReadOnlyList<PortForwardRule>>? forwardsByNetwork = null,
        IReadOnlyDictionary<string, string>? vxlanDevices = null, IReadOnlyList<string>? vxlanPeers = null)
    {
        // Only networks realized here: a forward to a guest whose bridge is not up yet waits for the next pass.
        var forwards = networks
            .SelectMany(n => (forwardsByNetwork?.GetValueOrDefault(n.Id) ?? []).Select(f => (Network: n, Rule: f)))
            .ToList();
        var s = new StringBuilder();
        s.Append(CultureInfo.InvariantCulture, $"table inet {table}\ndelete table inet {table}\n");
        s.Append(CultureInfo.InvariantCulture, $"table bridge {table}\ndelete table bridge {table}\n");
        if (networks.Count == 0) return s.ToString();
        s.Append(CultureInfo.InvariantCulture, $"table inet {table} {{\n");
        s.Append("  chain forward {\n    type filter hook forward priority -10; policy accept;\n");
        // A guest (even on a --nat network) must never reach any node's VXLAN port: a forged packet there would put
        // frames on another network's segment.
        s.Append(CultureInfo.InvariantCulture, $"    iifname \"{NetworkNames.BridgePrefix}*\" udp dport {Vxlan.Port} counter drop comment \"kumo-vxlan-guard\"\n");
        // Forwarded connections first: they are public by design, so isolation and no-ingress rules do not apply.
        foreach (var (n, f) in forwards)
        {
            s.Append(CultureInfo.InvariantCulture,
                $"    oifname \"{n.Bridge}\" ip daddr {f.Address} {f.Protocol} dport {f.Port} ct status dnat accept comment \"kumo-forward {n.Name} {f.PublicPort}\"\n");
            s.Append(CultureInfo.InvariantCulture,
                $"    iifname \"{n.Bridge}\" ip saddr {f.Address} {f.Protocol} sport {f.Port} ct status dnat accept comment \"kumo-forward-reply {n.Name} {f.PublicPort}\"\n");
        }
        foreach (var n in networks)
        {
            var br = n.Bridge;
            s.Append(CultureInfo.InvariantCulture,
                $"    iifname \"{br}\" oifname \"{NetworkNames.BridgePrefix}*\" oifname != \"{br}\" counter drop comment \"kumo-isolate {n.Name}\"\n");
            s.Append(CultureInfo.InvariantCulture,
                $"    oifname \"{br}\" iifname \"{NetworkNames.BridgePrefix}*\" iifname != \"{br}\" counter drop comment \"kumo-isolate {n.Name}\"\n");
            if (n.Nat)
            {
                s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" accept comment \"kumo-egress {n.Name}\"\n");
                s.Append(CultureInfo.InvariantCulture, $"    oifname \"{br}\" ct state established,related accept comment \"kumo-return {n.Name}\"\n");
            }
            // "!= br": with br_netfilter, traffic between two guests on one bridge passes this hook with the bridge as
            // both its in- and out-interface; that traffic is the network's own and must flow.
            s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" oifname != \"{br}\" counter drop comment \"kumo-no-egress {n.Name}\"\n");
            s.Append(CultureInfo.InvariantCulture, $"    oifname \"{br}\" iifname != \"{br}\" counter drop comment \"kumo-no-ingress {n.Name}\"\n");
        }
        s.Append("  }\n");
        // Guests may ask the node for DHCP, DNS and ping on their own gateway only; the rest of the host is closed to them.
        s.Append("  chain input {\n    type filter hook input priority -10; policy accept;\n");
        // With VXLAN on, only the current peers may send this node encapsulated frames.
        if (vxlanPeers is not null)
        {
            var allowed = vxlanPeers.Count == 0 ? "" : $"ip saddr != {{ {string.Join(", ", vxlanPeers)} }} ";
            s.Append(CultureInfo.InvariantCulture, $"    udp dport {Vxlan.Port} {allowed}counter drop comment \"kumo-vxlan-peers\"\n");
        }
        foreach (var n in networks)
        {
            var br = n.Bridge;
            s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" udp dport 67 accept\n");
            s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" ip daddr {n.Gateway} udp dport 53 accept\n");
            s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" ip daddr {n.Gateway} tcp dport 53 accept\n");
            s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" ip daddr {n.Gateway} icmp type echo-request accept\n");
            s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" ct state established,related accept\n");
            s.Append(CultureInfo.InvariantCulture, $"    iifname \"{br}\" counter drop comment \"kumo-host {n.Name}\"\n");
        }
        s.Append("  }\n");
        if (forwards.Count > 0)
        {
            // Connections to the node's own addresses (from outside: prerouting; from the node itself: output).
            foreach (var (chain, hook) in new[] { ("prerouting", "prerouting"), ("output", "output") })
            {
                s.Append(CultureInfo.InvariantCulture, $"  chain {chain} {{\n    type nat hook {hook} priority -100; policy accept;\n");
                foreach (var (n, f) in forwards)
                    s.Append(CultureInfo.InvariantCulture,
                        $"    fib daddr type local ip daddr != 127.0.0.0/8 {f.Protocol} dport {f.PublicPort} dnat ip to {f.Address}:{f.Port} comment \"kumo-forward {n.Name} {f.PublicPort}\"\n");
                s.Append("  }\n");
            }
        }
        if (networks.Any(n => n.Nat) || forwards.Count > 0)
        {
            s.Append("  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n");
            foreach (var n in networks.Where(n => n.Nat))
                s.Append(CultureInfo.InvariantCulture, $"    iifname \"{n.Bridge}\" oifname != \"{n.Bridge}\" masquerade comment \"kumo-nat {n.Name}\"\n");
            // Forwarded connections leave through the gateway address, so the guest answers through the node even
            // when its network has no NAT and therefore no default route.
            foreach (var n in networks.Where(n => forwards.Any(f => f.Network == n)))
                s.Append(CultureInfo.InvariantCulture, $"    oifname \"{n.Bridge}\" ct status dnat masquerade comment \"kumo-forward-snat {n.Name}\"\n");
            s.Append("  }\n");
        }
        s.Append("}\n");
        AppendVxlanBridgeTable(s, table, networks, vxlanDevices);
        return s.ToString();
    }

    /// <summary>
    /// Every node of a spanning network holds the same gateway address on its own bridge and runs its own dnsmasq,
    /// so the bridge-level table keeps them apart: DHCP never crosses a VXLAN port (each node's dnsmasq answers only
    /// the guests on its own bridge, from the same IPAM list), and neither do ARP for the gateway address nor IP
    /// to or from it (a guest resolves and reaches only its own node's gateway). A VXLAN device is a port of its
    /// network's bridge alone, so it carries no other network's frames.
    /// </summary>
    private static void AppendVxlanBridgeTable(StringBuilder s, string table, IReadOnlyList<NetworkRecord> networks,
        IReadOnlyDictionary<string, string>? vxlanDevices)
    {
        var spanning = networks.Where(n => vxlanDevices?.ContainsKey(n.Id) == true).Select(n => (Network: n, Device: vxlanDevices![n.Id])).ToList();
        if (spanning.Count == 0) return;
        s.Append(CultureInfo.InvariantCulture, $"table bridge {table} {{\n");
        foreach (var (chain, directions) in new[] { ("forward", new[] { "iifname", "oifname" }), ("input", new[] { "iifname" }), ("output", new[] { "oifname" }) })
        {
            s.Append(CultureInfo.InvariantCulture, $"  chain {chain} {{\n    type filter hook {chain} priority -10; policy accept;\n");
            foreach (var (n, device) in spanning)
            {
                foreach (var dir in directions)
                {
                    s.Append(CultureInfo.InvariantCulture, $"    {dir} \"{device}\" udp dport {{ 67, 68 }} counter drop comment \"kumo-vxlan-dhcp {n.Name}\"\n");
                    s.Append(CultureInfo.InvariantCulture, $"    {dir} \"{device}\" arp daddr ip {n.Gateway} counter drop comment \"kumo-vxlan-gateway {n.Name}\"\n");
                    s.Append(CultureInfo.InvariantCulture, $"    {dir} \"{device}\" arp saddr ip {n.Gateway} counter drop comment \"kumo-vxlan-gateway {n.Name}\"\n");
                    s.Append(CultureInfo.InvariantCulture, $"    {dir} \"{device}\" ip daddr {n.Gateway} counter drop comment \"kumo-vxlan-gateway {n.Name}\"\n");
                    s.Append(CultureInfo.InvariantCulture, $"    {dir} \"{device}\" ip saddr {n.Gateway} counter drop comment \"kumo-vxlan-gateway {n.Name}\"\n");
                }
            }
            s.Append("  }\n");
        }
        s.Append("}\n");
    }

    private static string DhcpHosts(DesiredNetwork n) =>
        string.Concat(n.Hosts.Select(h => $"{h.Mac},{h.Address},{h.Name}\n"));

    private static string Hosts(DesiredNetwork n) =>
        string.Concat(n.Hosts.Select(h => string.IsNullOrEmpty(n.DnsDomain) ? $"{h.Address} {h.Name}\n" : $"{h.Address} {h.Name}.{n.DnsDomain} {h.Name}\n"));

    private static async Task EnableForwardingAsync(CancellationToken ct)
    {
        const string path = "/proc/sys/net/ipv4/ip_forward";
        if ((await File.ReadAllTextAsync(path, ct)).Trim() != "1") await File.WriteAllTextAsync(path, "1", ct);
    }

    private static async Task<bool> WriteIfChangedAsync(string path, string content, CancellationToken ct)
    {
        if (File.Exists(path) && await File.ReadAllTextAsync(path, ct) == content) return false;
        var tmp = path + ".tmp";
        await File.WriteAllTextAsync(tmp, content, ct);
        File.Move(tmp, path, overwrite: true);
        return true;
    }

    public static bool LinkExists(string name) => Directory.Exists($"/sys/class/net/{name}");

    private static string? LinkAddress(string name) =>
        File.Exists($"/sys/class/net/{name}/address") ? File.ReadAllText($"/sys/class/net/{name}/address").Trim() : null;

    /// <summary>The interfaces enslaved to a bridge (its taps).</summary>
    public static IReadOnlyList<string> Ports(string bridge)
    {
        var dir = $"/sys/class/net/{bridge}/brif";
        return Directory.Exists(dir) ? Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).OfType<string>().ToList() : [];
    }

    private static async Task BridgeAsync(CancellationToken ct, params string[] args)
    {
        var r = await ProcessRunner.RunAsync("bridge", args, ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"bridge {string.Join(' ', args)} failed: {r.Stderr.Trim()}");
    }

    private static async Task IpAsync(CancellationToken ct, params string[] args)
    {
        var r = await ProcessRunner.RunAsync("ip", args, ct);
        if (r.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)} failed: {r.Stderr.Trim()}");
    }

    private static string? NullIfEmpty(string s) => string.IsNullOrEmpty(s) ? null : s;

    [LoggerMessage(LogLevel.Information, "bridge {Bridge} created for network {Name} ({Subnet})")]
    private partial void LogBridgeCreated(string bridge, string name, string subnet);

    [LoggerMessage(LogLevel.Information, "dnsmasq started for network {Name} on {Bridge}")]
    private partial void LogDnsmasqStarted(string name, string bridge);

    [LoggerMessage(LogLevel.Information, "network {Name} torn down (bridge {Bridge}, dnsmasq, nftables rules)")]
    private partial void LogTornDown(string name, string bridge);

    [LoggerMessage(LogLevel.Information, "VXLAN device {Device} created for network {Name} (VNI {Vni})")]
    private partial void LogVxlanCreated(string device, string name, uint vni);

    [LoggerMessage(LogLevel.Information, "VXLAN device {Device} of network {Name} removed: no other node realizes it")]
    private partial void LogVxlanRemoved(string device, string name);

    [LoggerMessage(LogLevel.Information, "network {Name}: VXLAN peer {Peer} added")]
    private partial void LogPeerAdded(string name, string peer);

    [LoggerMessage(LogLevel.Information, "network {Name}: VXLAN peer {Peer} removed")]
    private partial void LogPeerRemoved(string name, string peer);

    [LoggerMessage(LogLevel.Warning, "network sync failed")]
    private partial void LogSyncFailed(Exception e);
}
