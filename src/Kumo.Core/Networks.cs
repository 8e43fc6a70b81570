using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Kumo.Core;

/// <summary>A tenant network: one isolated L2 segment per project network, with DHCP/DNS and optional NAT.</summary>
public sealed record Network
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Project { get; init; }

    /// <summary>Canonical IPv4 CIDR, e.g. 10.42.0.0/24.</summary>
    public required string Subnet { get; init; }

    /// <summary>The first host address: the node side of the network (DHCP, DNS, and the router when NAT is on).</summary>
    public required string Gateway { get; init; }

    public bool Nat { get; init; }
    public string? DnsDomain { get; init; }

    /// <summary>The VXLAN network identifier that carries this network between nodes (unique, allocated by kumod).</summary>
    public int Vni { get; init; }

    /// <summary>Addresses handed out to instance NICs.</summary>
    public IReadOnlyList<NetworkAddress> Addresses { get; init; } = [];

    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>One instance NIC's address on a network (IPAM): never shared, released when the instance is deleted.</summary>
public sealed record NetworkAddress
{
    public required string Network { get; init; }
    public required string Address { get; init; }
    public required string Mac { get; init; }
    public string? Instance { get; init; }
}

/// <summary>Body of POST /networks.</summary>
public sealed record NetworksPost
{
    public string? Name { get; init; }
    public string? Subnet { get; init; }
    public bool? Nat { get; init; }
    public string? DnsDomain { get; init; }
}

/// <summary>An IPv4 subnet in CIDR form. Parsing is strict: host bits must be zero, so "10.0.0.1/24" is refused.</summary>
public readonly record struct Cidr(uint Network, int Prefix)
{
    /// <summary>Smallest network Kumo hands out: /29 leaves a gateway and 5 guests.</summary>
    public const int MaxPrefix = 29;

    /// <summary>Largest: a /16 is 65,534 hosts, more than any one network needs.</summary>
    public const int MinPrefix = 16;

    public uint Mask => Prefix == 0 ? 0 : uint.MaxValue << (32 - Prefix);
    public uint Broadcast => Network | ~Mask;
    public uint First => Network + 1;
    public uint Last => Broadcast - 1;

    /// <summary>Number of addresses instances can get (all hosts but the gateway).</summary>
    public long GuestCapacity => (long)Last - First;

    public bool Contains(uint address) => (address & Mask) == Network;

    public bool Overlaps(Cidr other)
    {
        var mask = Prefix < other.Prefix ? Mask : other.Mask;
        return (Network & mask) == (other.Network & mask);
    }

    public override string ToString() => $"{Format(Network)}/{Prefix.ToString(CultureInfo.InvariantCulture)}";

    public string MaskString => Format(Mask);

    /// <summary>Parses "a.b.c.d/n"; the error says what is wrong, in words a user can act on.</summary>
    public static bool TryParse(string? text, out Cidr cidr, out string? error)
    {
        cidr = default;
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "a subnet is required, e.g. 10.42.0.0/24";
            return false;
        }
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
        {
            error = $"'{text}' is not in CIDR form; write it like 10.42.0.0/24";
            return false;
        }
        var addressText = text[..slash];
        var prefixText = text[(slash + 1)..];
        // IPAddress.Parse accepts "10" or "10.1" as shorthands; a subnet must be spelled out.
        if (addressText.Count(c => c == '.') != 3 || !IPAddress.TryParse(addressText, out var ip) || ip.AddressFamily != AddressFamily.InterNetwork)
        {
            error = $"'{addressText}' is not an IPv4 address (IPv6 networks are not supported yet)";
            return false;
        }
        if (prefixText.Length is 0 or > 2 || !prefixText.All(char.IsAsciiDigit)
            || !int.TryParse(prefixText, NumberStyles.None, CultureInfo.InvariantCulture, out var prefix) || prefix > 32)
        {
            error = $"'/{prefixText}' is not a prefix length between 0 and 32";
            return false;
        }
        if (prefix < MinPrefix || prefix > MaxPrefix)
        {
            error = $"a /{prefix.ToString(CultureInfo.InvariantCulture)} network is not supported; use a prefix from /{MinPrefix} to /{MaxPrefix}";
            return false;
        }
        var address = BinaryPrimitives.ReadUInt32BigEndian(ip.GetAddressBytes());
        var c = new Cidr(address & (uint.MaxValue << (32 - prefix)), prefix);
        if (c.Network != address)
        {
            error = $"'{text}' has host bits set; the network is {c}";
            return false;
        }
        if (IsReserved(c))
        {
            error = $"{c} overlaps loopback, link-local, multicast or reserved space; use a private range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16";
            return false;
        }
        cidr = c;
        return true;
    }

    public static Cidr Parse(string text) =>
        TryParse(text, out var c, out var error) ? c : throw new FormatException(error);

    public static string Format(uint address)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, address);
        return new IPAddress(b).ToString();
    }

    public static uint ParseAddress(string address) =>
        BinaryPrimitives.ReadUInt32BigEndian(IPAddress.Parse(address).GetAddressBytes());

    private static readonly Cidr[] Reserved =
    [
        new(0x00000000, 8),    // 0.0.0.0/8 "this network"
        new(0x7F000000, 8),    // loopback
        new(0xA9FE0000, 16),   // link-local
        new(0xE0000000, 4),    // multicast
        new(0xF0000000, 4),    // reserved, broadcast
    ];

    private static bool IsReserved(Cidr c) => Reserved.Any(r => r.Overlaps(c));
}

/// <summary>VXLAN between nodes: how a tenant network spans agents.</summary>
public static class Vxlan
{
    /// <summary>The IANA port; every agent listens on it at its underlay address.</summary>
    public const int Port = 4789;

    /// <summary>An underlay address must be one unicast IPv4 address the other nodes can send UDP to.</summary>
    public static string? ValidateUnderlay(string address)
    {
        if (!IPAddress.TryParse(address, out var ip) || ip.AddressFamily != AddressFamily.InterNetwork || address.Count(ch => ch == '.') != 3)
            return $"VXLAN address '{address}' is not an IPv4 address";
        var b = ip.GetAddressBytes();
        if (b[0] is 0 or >= 224)
            return $"VXLAN address '{address}' is not a unicast address";
        return null;
    }
}
