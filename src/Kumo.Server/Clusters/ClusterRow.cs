using System.Text.Json;
using Kumo.Core;
using Kumo.Server.Storage;

namespace Kumo.Server.Clusters;

/// <summary>A clusters row as Dapper reads it.</summary>
internal sealed class ClusterRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Project { get; set; } = "";

    /// <summary><see cref="ReservationKinds"/>: a cluster, or a single reserved VM (frontend fields describe it).</summary>
    public string Kind { get; set; } = ReservationKinds.Cluster;

    /// <summary>A reserved VM's validated create request (JSON, no password) and its password's crypt hash.</summary>
    public string? VmSpec { get; set; }

    public string? VmPasswordHash { get; set; }
    public string? OwnerId { get; set; }
    public string State { get; set; } = "";
    public string? Message { get; set; }
    public long Nodes { get; set; }
    public string FrontendImage { get; set; } = "";
    public long FrontendCpus { get; set; }
    public long FrontendMemoryBytes { get; set; }
    public string NodeImage { get; set; } = "";
    public long NodeCpus { get; set; }
    public long NodeMemoryBytes { get; set; }
    public string PrivateNetwork { get; set; } = "";
    public string PrivateSubnet { get; set; } = "";
    public string ExternalNetwork { get; set; } = "";
    public string? ExternalSubnet { get; set; }
    public long OwnsExternal { get; set; }
    public long? ExposePort { get; set; }
    public long? PublicPort { get; set; }

    /// <summary>For a reservation: the node whose capacity the window holds.</summary>
    public string? NodeId { get; set; }
    public string? StartAt { get; set; }
    public string? EndAt { get; set; }
    public long Warned { get; set; }
    public string? OperationId { get; set; }
    public string Events { get; set; } = "[]";
    public string CreatedAt { get; set; } = "";
    public string UpdatedAt { get; set; } = "";

    /// <summary>Filled by joins.</summary>
    public string? OwnerName { get; set; }

    public string? NodeName { get; set; }

    public int TotalCpus => (int)(FrontendCpus + Nodes * NodeCpus);
    public long TotalMemoryBytes => FrontendMemoryBytes + Nodes * NodeMemoryBytes;
    public bool IsReservation => EndAt is not null;
    public bool IsVm => Kind == ReservationKinds.Vm;

    /// <summary>The frontend's name; a reserved VM is its only member and has the reservation's name.</summary>
    public string FrontendName => IsVm ? Name : ClusterNames.Frontend(Name);

    private static readonly JsonSerializerOptions Camel = new(JsonSerializerDefaults.Web);

    public List<ClusterEvent> EventList() => JsonSerializer.Deserialize<List<ClusterEvent>>(Events, Camel) ?? [];

    public void AddEvent(DateTimeOffset at, string kind, string message)
    {
        var list = EventList();
        list.Add(new ClusterEvent { At = at, Kind = kind, Message = message });
        // Bounded: a cluster that flaps for weeks must not grow its row without end.
        if (list.Count > 50) list.RemoveRange(0, list.Count - 50);
        Events = JsonSerializer.Serialize(list, Camel);
    }

    public Cluster ToApi(IReadOnlyList<ClusterMember> members) => new()
    {
        Id = Id,
        Name = Name,
        Project = Project,
        Owner = OwnerName,
        State = State,
        Message = Message,
        Nodes = (int)Nodes,
        FrontendImage = FrontendImage,
        FrontendCpus = (int)FrontendCpus,
        FrontendMemoryBytes = FrontendMemoryBytes,
        NodeImage = NodeImage,
        NodeCpus = (int)NodeCpus,
        NodeMemoryBytes = NodeMemoryBytes,
        PrivateNetwork = PrivateNetwork,
        PrivateSubnet = PrivateSubnet,
        ExternalNetwork = ExternalNetwork,
        ExposePort = ExposePort is { } e ? (int)e : null,
        PublicPort = PublicPort is { } p ? (int)p : null,
        Start = StartAt is null ? null : Json.Time(StartAt),
        End = EndAt is null ? null : Json.Time(EndAt),
        Members = members,
        Events = EventList(),
        CreatedAt = Json.Time(CreatedAt),
    };

    public Reservation ToReservation() => new()
    {
        Name = Name,
        Kind = Kind,
        Project = Project,
        Owner = OwnerName,
        Start = Json.Time(StartAt!),
        End = Json.Time(EndAt!),
        State = State,
        Node = NodeName,
        Cpus = TotalCpus,
        MemoryBytes = TotalMemoryBytes,
        Events = EventList(),
    };
}

/// <summary>Names of the things a cluster makes, derived from its name so a restarted kumod finds them again.</summary>
public static class ClusterNames
{
    /// <summary>Longest cluster name: leaves room for the "-n64" of its members within the 63-character name limit.</summary>
    public const int MaxLength = 50;

    public static string Frontend(string cluster) => $"{cluster}-fe";

    public static string Node(string cluster, int index) => $"{cluster}-n{index}";

    public static string PrivateNetwork(string cluster) => $"{cluster}-net";

    public static string ExternalNetwork(string cluster) => $"{cluster}-ext";

    /// <summary>The index of a compute node member ("hpc-n3" is 3), or null for the frontend.</summary>
    public static int? NodeIndex(string cluster, string member) =>
        member.StartsWith(cluster + "-n", StringComparison.Ordinal)
        && int.TryParse(member.AsSpan(cluster.Length + 2), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var i)
            ? i
            : null;
}
