using System.Globalization;
using System.Text.Json;
using Kumo.Core;

namespace Kumo.Server.Storage;

/// <summary>Database rows as Dapper reads them (snake_case columns matched to PascalCase properties).</summary>
internal sealed class NodeRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Health { get; set; } = "";
    public long Draining { get; set; }
    public string Accelerator { get; set; } = "";
    public long Cpus { get; set; }
    public long MemoryBytes { get; set; }
    public string Labels { get; set; } = "{}";
    public string? LastHeartbeat { get; set; }
    public string? AgentVersion { get; set; }
    public long Version { get; set; }
    public string CreatedAt { get; set; } = "";
    public string? VxlanAddress { get; set; }

    public string State => Health == NodeStates.Down ? NodeStates.Down : Draining != 0 ? NodeStates.Draining : NodeStates.Ready;
}

internal sealed class InstanceRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Project { get; set; } = "";
    public string? OwnerId { get; set; }
    public string Type { get; set; } = "";
    public string Image { get; set; } = "";
    public long Cpus { get; set; }
    public long MemoryBytes { get; set; }
    public long DiskBytes { get; set; }
    public string? NodeId { get; set; }
    public string State { get; set; } = "";
    public string DesiredPower { get; set; } = "";
    public string StopMode { get; set; } = "";
    public long BootGeneration { get; set; }
    public string? StatusMessage { get; set; }
    public string? ImageId { get; set; }
    public string? SshKeys { get; set; }
    public string? PasswordHash { get; set; }

    /// <summary>For containers: the <see cref="ContainerSpec"/> as JSON.</summary>
    public string? Container { get; set; }

    public long RestoreGeneration { get; set; }
    public string? RestoreSnapshot { get; set; }

    /// <summary>The virtual cluster this instance is a member of, if any.</summary>
    public string? ClusterId { get; set; }

    /// <summary>The libvirt domain template the VM was made from, and its XML as it was then.</summary>
    public string? Template { get; set; }
    public string? TemplateXml { get; set; }
    public string Labels { get; set; } = "{}";
    public string? Description { get; set; }
    public long Version { get; set; }
    public string CreatedAt { get; set; } = "";
    public string UpdatedAt { get; set; } = "";

    /// <summary>Filled by joins: the node's name.</summary>
    public string? NodeName { get; set; }

    /// <summary>Filled by joins: the owner's user name.</summary>
    public string? OwnerName { get; set; }

    public Instance ToApi() => new()
    {
        Id = Id,
        Name = Name,
        Project = Project,
        Type = Type,
        Image = Image,
        Cpus = (int)Cpus,
        MemoryBytes = MemoryBytes,
        DiskBytes = DiskBytes,
        Node = NodeName,
        State = State,
        DesiredPower = DesiredPower,
        StatusMessage = StatusMessage,
        Labels = Json.Labels(Labels),
        Description = Description,
        Container = Json.Container(Container),
        Template = Template,
        Owner = OwnerName,
        Version = Version,
        CreatedAt = Json.Time(CreatedAt),
        UpdatedAt = Json.Time(UpdatedAt),
    };
}

internal sealed class ImageRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Project { get; set; } = "";
    public string Type { get; set; } = "";
    public string Readiness { get; set; } = "";
    public string? Description { get; set; }
    public long BuiltIn { get; set; }
    public string? OwnerId { get; set; }
    public string? Sha256 { get; set; }
    public long? SizeBytes { get; set; }
    public long? VirtualSizeBytes { get; set; }
    public string? SourceFormat { get; set; }
    public string? NodeId { get; set; }

    /// <summary>Joined from nodes when the query asks for it (node_name).</summary>
    public string? NodeName { get; set; }
    public string CreatedAt { get; set; } = "";

    public Image ToApi() => new()
    {
        Node = NodeName,
        Sha256 = Sha256,
        SizeBytes = SizeBytes,
        VirtualSizeBytes = VirtualSizeBytes,
        SourceFormat = SourceFormat,
        Id = Id,
        Name = Name,
        Project = Project,
        Type = Type,
        Readiness = Readiness,
        Description = Description,
        BuiltIn = BuiltIn != 0,
        CreatedAt = Json.Time(CreatedAt),
    };
}

internal sealed class OperationRow
{
    public string Id { get; set; } = "";
    public string Kind { get; set; } = "";
    public string Target { get; set; } = "";
    public string? InstanceId { get; set; }
    public string? Project { get; set; }
    public string? UserId { get; set; }
    public string? Expect { get; set; }
    public long MinGeneration { get; set; }
    public string Status { get; set; } = "";
    public string? Message { get; set; }
    public string? Error { get; set; }
    public string CreatedAt { get; set; } = "";
    public string UpdatedAt { get; set; } = "";

    public Operation ToApi() => new()
    {
        Id = Id,
        Kind = Kind,
        Target = Target,
        Status = Status,
        Message = Message,
        Error = Error,
        CreatedAt = Json.Time(CreatedAt),
        UpdatedAt = Json.Time(UpdatedAt),
    };
}

internal static class Json
{
    public static string Now(TimeProvider time) => At(time.GetUtcNow());

    public static string At(DateTimeOffset at) => at.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture);

    public static DateTimeOffset Time(string s) => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);

    public static IReadOnlyDictionary<string, string> Labels(string json) =>
        JsonSerializer.Deserialize<Dictionary<string, string>>(json) ?? [];

    public static string Labels(IReadOnlyDictionary<string, string>? labels) =>
        JsonSerializer.Serialize(labels ?? new Dictionary<string, string>());

    private static readonly JsonSerializerOptions Camel = new(JsonSerializerDefaults.Web);

    public static ContainerSpec? Container(string? json) => json is null ? null : JsonSerializer.Deserialize<ContainerSpec>(json, Camel);

    public static string? Container(ContainerSpec? spec) => spec is null ? null : JsonSerializer.Serialize(spec, Camel);
}
