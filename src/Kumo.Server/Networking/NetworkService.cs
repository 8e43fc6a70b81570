using System.Security.Cryptography;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Networking;

/// <summary>
/// Tenant networks and their IPAM. A network belongs to a project; its subnet may overlap other projects' networks
/// (they are separate L2 segments) but not another network of the same project, where guests could be on both.
/// </summary>
public sealed class NetworkService(Database db, TimeProvider time)
{
    public const int MaxDnsDomain = 253;

    /// <summary>VNIs start above the 802.1Q range, so a site that maps VLAN n to VNI n never collides with Kumo's.</summary>
    public const int FirstVni = 4096;

    /// <summary>VNIs are 24 bits.</summary>
    public const int MaxVni = (1 << 24) - 1;

    public Task<List<Network>> ListAsync(string project, CancellationToken ct) =>
        db.ReadAsync(c =>
        {
            var rows = c.Query<NetworkRow>("SELECT * FROM networks WHERE project = @project ORDER BY name", new { project }).ToList();
            var addresses = Addresses(c, null, "n.project = @project", new { project });
            return rows.Select(r => r.ToApi(addresses.Where(a => a.Network == r.Name).ToList())).ToList();
        }, ct);

    public async Task<Network> GetAsync(string project, string name, CancellationToken ct) =>
        await db.ReadAsync(c => Find(c, null, project, name) is { } r
            ? r.ToApi(Addresses(c, null, "n.id = @Id", new { r.Id }))
            : null, ct) ?? throw ProblemException.NotFound("network", name);

    public async Task<Network> CreateAsync(Caller caller, string project, NetworksPost? body, CancellationToken ct)
    {
        var (name, subnet, domain) = Validate(body);
        try
        {
            return await db.WriteAsync(ctx => Create(ctx, caller, project, name, subnet, body!.Nat == true, domain).ToApi([]), ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"a network named '{name}' already exists in project '{project}'");
        }
    }

    /// <summary>Creates a network inside a write (a cluster makes its networks in the write that places its members).</summary>
    internal NetworkRow Create(WriteContext ctx, Caller caller, string project, string name, Cidr subnet, bool nat, string? domain)
    {
        foreach (var other in ctx.Connection.Query<NetworkRow>("SELECT * FROM networks WHERE project = @project", new { project }, ctx.Transaction))
        {
            if (other.Name == name) throw ProblemException.Conflict($"a network named '{name}' already exists in project '{project}'");
            if (Cidr.Parse(other.Subnet).Overlaps(subnet))
                throw new ProblemException(409, ProblemTypes.SubnetOverlap, "The subnet overlaps another network of this project",
                    $"{subnet} overlaps network '{other.Name}' ({other.Subnet}) in project '{project}'; choose a subnet that does not");
        }
        var row = new NetworkRow
        {
            Id = Ulid.NewUlid().ToString().ToLowerInvariant(),
            Name = name,
            Project = project,
            Subnet = subnet.ToString(),
            Nat = nat ? 1 : 0,
            DnsDomain = domain,
            OwnerId = caller.UserId,
            CreatedAt = Json.Now(time),
            Vni = NextVni(ctx),
        };
        ctx.Connection.Execute(
            """
            INSERT INTO networks (id, name, project, subnet, nat, dns_domain, owner_id, created_at, vni)
            VALUES (@Id, @Name, @Project, @Subnet, @Nat, @DnsDomain, @OwnerId, @CreatedAt, @Vni)
            """, row, ctx.Transaction);
        return row;
    }

    /// <summary>
    /// The next VNI: one above the last one handed out (a counter, so a deleted network's VNI does not go to a new
    /// network while some agent may still hold its VXLAN device); after the 24-bit space is used up once, the lowest
    /// free one. Runs in the create write.
    /// </summary>
    internal static long NextVni(WriteContext ctx)
    {
        var next = ctx.Connection.ExecuteScalar<long>("UPDATE counters SET value = value + 1 WHERE name = 'vni' RETURNING value",
            transaction: ctx.Transaction);
        if (next <= MaxVni) return next;
        var free = ctx.Connection.ExecuteScalar<long?>(
            """
            SELECT min(v) FROM (SELECT @FirstVni AS v UNION ALL SELECT vni + 1 FROM networks WHERE vni < @MaxVni)
            WHERE NOT EXISTS (SELECT 1 FROM networks o WHERE o.vni = v)
            """, new { FirstVni, MaxVni }, ctx.Transaction);
        return free ?? throw new ProblemException(409, ProblemTypes.NoCapacity, "No VXLAN network identifier is free",
            "all VNIs are in use; delete unused networks");
    }

    /// <summary>Deletes a network nobody uses; while an instance has an address on it the answer is 409 network-in-use.</summary>
    public Task DeleteAsync(string project, string name, CancellationToken ct) =>
        db.WriteAsync(ctx => Delete(ctx, project, name), ct);

    internal static void Delete(WriteContext ctx, string project, string name)
    {
        var row = Find(ctx.Connection, ctx.Transaction, project, name) ?? throw ProblemException.NotFound("network", name);
        var users = ctx.Connection.Query<string>(
            "SELECT i.name FROM network_addresses a JOIN instances i ON i.id = a.instance_id WHERE a.network_id = @Id ORDER BY i.name",
            new { row.Id }, ctx.Transaction).ToList();
        if (users.Count > 0)
            throw new ProblemException(409, ProblemTypes.NetworkInUse, "The network is in use",
                $"network '{name}' is used by instance{(users.Count > 1 ? "s" : "")} {string.Join(", ", users.Take(10).Select(u => $"'{u}'"))}"
                + (users.Count > 10 ? $" and {users.Count - 10} more" : "") + "; delete them first");
        // Addresses of instances already gone (their row removed by force) go with the network.
        ctx.Connection.Execute("DELETE FROM network_addresses WHERE network_id = @Id", new { row.Id }, ctx.Transaction);
        ctx.Connection.Execute("DELETE FROM networks WHERE id = @Id", new { row.Id }, ctx.Transaction);
    }

    /// <summary>Subnets of every network in the cloud (all projects), for picking a free one.</summary>
    internal static List<Cidr> AllSubnets(WriteContext ctx) =>
        ctx.Connection.Query<string>("SELECT subnet FROM networks", transaction: ctx.Transaction).Select(Cidr.Parse).ToList();


    /// <summary>
    /// IPAM: gives an instance's NIC the lowest free address of the network (the gateway, network and broadcast
    /// addresses are never handed out) and a MAC no other NIC has. Runs inside the instance's create write.
    /// </summary>
    internal NetworkAddress Allocate(WriteContext ctx, string project, string networkName, string instanceId, string instanceName)
    {
        var row = Find(ctx.Connection, ctx.Transaction, project, networkName)
            ?? throw ProblemException.Validation("network", $"network '{networkName}' does not exist in project '{project}' (see: kumo network list)");
        var cidr = Cidr.Parse(row.Subnet);
        var used = ctx.Connection.Query<string>("SELECT address FROM network_addresses WHERE network_id = @Id", new { row.Id }, ctx.Transaction)
            .Select(Cidr.ParseAddress).ToHashSet();
        uint? free = null;
        for (var a = cidr.First + 1; a <= cidr.Last; a++)
        {
            if (used.Contains(a)) continue;
            free = a;
            break;
        }
        if (free is null)
            throw new ProblemException(409, ProblemTypes.AddressesExhausted, "The network has no free address",
                $"all {cidr.GuestCapacity} guest addresses of network '{networkName}' ({cidr}) are in use");
        string mac;
        do
        {
            mac = NewMac();
        }
        while (ctx.Connection.ExecuteScalar<long>("SELECT count(*) FROM network_addresses WHERE mac = @mac", new { mac }, ctx.Transaction) > 0);
        var address = Cidr.Format(free.Value);
        ctx.Connection.Execute("INSERT INTO network_addresses (network_id, address, mac, instance_id) VALUES (@Id, @address, @mac, @instanceId)",
            new { row.Id, address, mac, instanceId }, ctx.Transaction);
        return new NetworkAddress { Network = networkName, Address = address, Mac = mac, Instance = instanceName };
    }

    /// <summary>
    /// Nodes that cannot host a NIC on this network: a node realizes each network as a bridge holding its gateway
    /// address, so two networks with overlapping subnets (other projects may reuse a subnet) cannot share a node.
    /// Unknown networks exclude nothing here; IPAM refuses them right after placement.
    /// </summary>
    internal static Dictionary<string, string> NodesWithOverlappingNetworks(WriteContext ctx, string project, string networkName)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (Find(ctx.Connection, ctx.Transaction, project, networkName) is not { } network) return result;
        var subnet = Cidr.Parse(network.Subnet);
        var others = ctx.Connection.Query<(string NodeId, string Subnet)>(
            """
            SELECT DISTINCT i.node_id, n.subnet FROM network_addresses a JOIN networks n ON n.id = a.network_id
            JOIN instances i ON i.id = a.instance_id WHERE n.id != @Id AND i.node_id IS NOT NULL
            """, new { network.Id }, ctx.Transaction);
        foreach (var (nodeId, other) in others)
        {
            if (Cidr.Parse(other).Overlaps(subnet))
                result[nodeId] = $"it hosts another network whose subnet ({other}) overlaps {network.Subnet}";
        }
        return result;
    }

    /// <summary>Releases every address an instance holds (its delete).</summary>
    internal static int Release(WriteContext ctx, string instanceId) =>
        ctx.Connection.Execute("DELETE FROM network_addresses WHERE instance_id = @instanceId", new { instanceId }, ctx.Transaction);

    /// <summary>The NICs of instances, keyed by instance id.</summary>
    internal static ILookup<string, NetworkAddress> NicsOf(SqliteConnection c, SqliteTransaction? tx, IEnumerable<string> instanceIds)
    {
        var ids = instanceIds.ToList();
        if (ids.Count == 0) return Array.Empty<(string, NetworkAddress)>().ToLookup(x => x.Item1, x => x.Item2);
        return c.Query<(string InstanceId, string Network, string Address, string Mac, string Instance)>(
            """
            SELECT a.instance_id, n.name, a.address, a.mac, i.name FROM network_addresses a
            JOIN networks n ON n.id = a.network_id JOIN instances i ON i.id = a.instance_id
            WHERE a.instance_id IN @ids ORDER BY n.name
            """, new { ids }, tx)
            .ToLookup(r => r.InstanceId, r => new NetworkAddress { Network = r.Network, Address = r.Address, Mac = r.Mac, Instance = r.Instance });
    }

    internal static (string Name, Cidr Subnet, string? Domain) Validate(NetworksPost? body)
    {
        if (body is null)
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object");
        var errors = new Dictionary<string, string[]>();
        if (Names.Validate(body.Name, "network name") is { } nameError) errors["name"] = [nameError];
        if (!Cidr.TryParse(body.Subnet, out var subnet, out var subnetError)) errors["subnet"] = [subnetError!];
        var domain = string.IsNullOrEmpty(body.DnsDomain) ? null : body.DnsDomain.TrimEnd('.');
        if (domain is not null && ValidateDomain(domain) is { } domainError) errors["dnsDomain"] = [domainError];
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        return (body.Name!, subnet, domain);
    }

    private static string? ValidateDomain(string domain)
    {
        if (domain.Length > MaxDnsDomain) return $"DNS domain is longer than {MaxDnsDomain} characters";
        foreach (var label in domain.Split('.'))
        {
            if (Names.Validate(label, "DNS domain label") is { } error)
                return $"'{domain}' is not a DNS domain: {error}";
        }
        return null;
    }

    /// <summary>A locally administered unicast MAC in QEMU's 52:54:00 range, as guests expect of a virtio NIC.</summary>
    private static string NewMac()
    {
        Span<byte> b = stackalloc byte[3];
        RandomNumberGenerator.Fill(b);
        return $"52:54:00:{b[0]:x2}:{b[1]:x2}:{b[2]:x2}";
    }

    internal static NetworkRow? Find(SqliteConnection c, SqliteTransaction? tx, string project, string name) =>
        c.QuerySingleOrDefault<NetworkRow>("SELECT * FROM networks WHERE project = @project AND name = @name", new { project, name }, tx);

    private static List<NetworkAddress> Addresses(SqliteConnection c, SqliteTransaction? tx, string where, object args) =>
        c.Query<(string Network, string Address, string Mac, string? Instance)>(
            $"""
            SELECT n.name, a.address, a.mac, i.name FROM network_addresses a
            JOIN networks n ON n.id = a.network_id LEFT JOIN instances i ON i.id = a.instance_id
            WHERE {where}
            """, args, tx)
            .OrderBy(a => Cidr.ParseAddress(a.Address))
            .Select(a => new NetworkAddress { Network = a.Network, Address = a.Address, Mac = a.Mac, Instance = a.Instance }).ToList();
}

internal sealed class NetworkRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Project { get; set; } = "";
    public string Subnet { get; set; } = "";
    public long Nat { get; set; }
    public string? DnsDomain { get; set; }
    public string? OwnerId { get; set; }
    public string CreatedAt { get; set; } = "";
    public long? Vni { get; set; }

    public Network ToApi(IReadOnlyList<NetworkAddress> addresses) => new()
    {
        Id = Id,
        Name = Name,
        Project = Project,
        Subnet = Subnet,
        Gateway = Cidr.Format(Cidr.Parse(Subnet).First),
        Nat = Nat != 0,
        DnsDomain = DnsDomain,
        Vni = (int)(Vni ?? 0),
        Addresses = addresses,
        CreatedAt = Json.Time(CreatedAt),
    };
}
