using System.Security.Cryptography;
using System.Text;

namespace Kumo.Agent.Networking;

/// <summary>
/// Names of the host objects a node makes for tenant networks. Linux interface names have at most 15 characters, so
/// they are short hashes: of node id and network id for a bridge (two agents on one host never share one), of the
/// instance id for a tap. The prefixes let nftables rules match every Kumo bridge with one wildcard.
/// </summary>
public static class NetworkNames
{
    public const string BridgePrefix = "kb-";
    public const string TapPrefix = "kt-";
    public const string VxlanPrefix = "kx-";

    public static string Bridge(string nodeId, string networkId) => BridgePrefix + Hash($"{nodeId}/{networkId}", 10);

    /// <summary>
    /// The bridge's own MAC address, set explicitly: a bridge left to the kernel takes the lowest MAC among its ports,
    /// so it changed whenever a guest's tap joined with a lower one, and guests kept sending to the gateway's old MAC
    /// (DNS, DHCP renewals and NAT stopped for up to a minute, until their ARP entry expired). Locally administered,
    /// unicast, and stable for the bridge's name.
    /// </summary>
    public static string BridgeMac(string bridge) => "02:" + string.Join(':', Hash(bridge + "/mac", 10).Chunk(2).Select(c => new string(c)));

    /// <summary>The VXLAN device that joins this node's bridge of a network to the other nodes' bridges of it.</summary>
    public static string Vxlan(string nodeId, string networkId) => VxlanPrefix + Hash($"{nodeId}/{networkId}", 10);

    public static string Tap(string instanceId, int index = 0) => TapPrefix + Hash($"{instanceId}/{index}", 11);

    /// <summary>The nftables table of one agent (an agent rewrites only its own table).</summary>
    public static string NftTable(string nodeId) => "kumo_" + Hash(nodeId, 10);

    private static string Hash(string s, int chars) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(s)))[..chars];
}
