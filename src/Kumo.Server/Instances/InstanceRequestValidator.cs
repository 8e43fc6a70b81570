using Kumo.Core;
using Kumo.Server.Api;

namespace Kumo.Server.Instances;

/// <summary>A create request after validation and defaulting.</summary>
public sealed record ValidCreate(
    string Name, string Type, string Image, int Cpus, long MemoryBytes, long DiskBytes, string? Node, bool Stopped,
    IReadOnlyDictionary<string, string> Labels, string? Description, IReadOnlyDictionary<string, string>? NodeSelector,
    IReadOnlyList<string> SshKeys, string? Password, ContainerSpec? Container = null, string? Network = null)
{
    /// <summary>The libvirt domain template to make the VM from (<see cref="TemplateXml"/> is filled by the service).</summary>
    public string? Template { get; init; }

    public string? TemplateXml { get; init; }
}

/// <summary>Checks every field of a request and reports all problems at once, keyed by field.</summary>
public static class InstanceRequestValidator
{
    public const int MaxCpus = 64;
    public const double MinCpuLimit = 0.01;
    public const long MinMemory = 16 * ByteSize.MiB;
    public const long MaxMemory = 4 * ByteSize.TiB;
    public const long MinDisk = ByteSize.MiB;
    public const long MaxDisk = 16 * ByteSize.TiB;
    public const int MaxDescription = 1024;

    /// <param name="owner">The user the instance will belong to: container volumes live in their storage dir.</param>
    public static ValidCreate Validate(InstancesPost? body, InstanceDefaults defaults, string? owner = null)
    {
        if (body is null)
            throw new ProblemException(400, Core.ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object");
        var errors = new Dictionary<string, List<string>>();
        void Add(string field, string message)
        {
            if (!errors.TryGetValue(field, out var list)) errors[field] = list = [];
            list.Add(message);
        }

        if (Names.Validate(body.Name) is { } nameError) Add("name", nameError);
        var type = body.Type ?? InstanceTypes.Vm;
        if (type is not (InstanceTypes.Vm or InstanceTypes.Container)) Add("type", $"type '{type}' is not known; use 'vm' or 'container'");
        var isContainer = type == InstanceTypes.Container;
        var image = body.Image ?? (isContainer ? defaults.ContainerImage : defaults.Image);
        // A container may name a registry image (HOST[:PORT]/PATH[:TAG]) that its node pulls; anything else is a Kumo image name.
        if ((isContainer && RegistryReferences.IsReference(image) ? RegistryReferences.Validate(image) : Names.Validate(image, "image")) is { } imageError)
            Add("image", imageError);
        // A fractional limit counts whole vCPUs against capacity and quota: a node cannot give out a half CPU twice
        // without overcommitting, and rounding up keeps the scheduler's integer arithmetic.
        var cpus = body.Cpus ?? (body.CpuLimit is > 0 and <= MaxCpus and var limit ? (int)Math.Ceiling(limit) : defaults.Cpus);
        if (body.CpuLimit is { } cpuLimit)
        {
            if (!isContainer) Add("cpuLimit", "a fractional CPU limit is for containers; VMs take whole cpus");
            else if (!(cpuLimit >= MinCpuLimit && cpuLimit <= MaxCpus)) Add("cpuLimit", $"cpuLimit must be between {MinCpuLimit.ToString(System.Globalization.CultureInfo.InvariantCulture)} and {MaxCpus}, got {cpuLimit.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
            else if (body.Cpus is { } whole && whole < Math.Ceiling(cpuLimit)) Add("cpuLimit", $"cpuLimit {cpuLimit.ToString(System.Globalization.CultureInfo.InvariantCulture)} is more than cpus {whole}");
        }
        if (cpus < 1 || cpus > MaxCpus) Add("cpus", $"cpus must be between 1 and {MaxCpus}, got {cpus}");
        // A container without -m still gets a limit: the admin-configured default, never "unlimited".
        var memory = Size(body.Memory, isContainer ? defaults.ContainerMemoryBytes : defaults.MemoryBytes, MinMemory, MaxMemory, "memory", Add);
        // A container has no disk of its own to reserve: its writable layer lives in the node's container storage.
        var disk = isContainer ? 0 : Size(body.Disk, defaults.DiskBytes, MinDisk, MaxDisk, "disk", Add);
        ContainerSpec? container = null;
        if (isContainer)
        {
            if (body.Disk is not null) Add("disk", "containers have no disk of their own; mount a volume from your storage dir instead");
            if (body.SshKeys is { Count: > 0 } || body.Password is not null) Add("sshKeys", "SSH keys and passwords are for VMs; use kumo ct exec");
            container = ContainerPolicy.Validate(body, owner, Add) with { CpuLimit = body.CpuLimit };
        }
        else if (body.Command is not null || body.Env is not null || body.Ports is not null || body.Volumes is not null
                 || body.Privileged is not null || body.Pid is not null || body.Ipc is not null
                 || body.Devices is not null || body.CapAdd is not null || body.Interactive is not null || body.Tty is not null)
        {
            Add("type", "command, env, ports, volumes and the other container fields need type 'container'");
        }
        if (body.Node is not null && Names.Validate(body.Node, "node") is { } nodeError) Add("node", nodeError);
        ValidateLabels(body.Labels, "labels", Add);
        ValidateLabels(body.NodeSelector, "nodeSelector", Add);
        if (body.Description is { Length: > MaxDescription }) Add("description", $"description is longer than {MaxDescription} characters");
        var keys = body.SshKeys?.Select(k => k?.Trim() ?? "").ToList() ?? [];
        if (keys.Count > 16) Add("sshKeys", "at most 16 SSH keys");
        foreach (var k in keys)
        {
            // One line of "TYPE BASE64 [comment]": anything else could smuggle YAML into the cloud-init seed.
            var parts = k.Split(' ', 3);
            if (k.Length > 16384 || k.Any(char.IsControl) || parts.Length < 2
                || !(parts[0].StartsWith("ssh-", StringComparison.Ordinal) || parts[0].StartsWith("ecdsa-", StringComparison.Ordinal)
                     || parts[0].StartsWith("sk-", StringComparison.Ordinal))
                || !IsBase64(parts[1]))
                Add("sshKeys", $"'{(k.Length > 40 ? k[..40] + "…" : k)}' is not an OpenSSH public key (ssh-ed25519 AAAA… comment)");
        }
        if (body.Password is { } pw && (pw.Length is < 8 or > 256 || pw.Any(char.IsControl)))
            Add("password", "password must be 8-256 printable characters");

        if (!isContainer && body.Network is not null && Names.Validate(body.Network, "network") is { } networkError) Add("network", networkError);

        if (body.Template is not null)
        {
            if (Names.Validate(body.Template, "template") is { } templateError) Add("template", templateError);
            // What a template fixes is not the user's to change: refused outright, never silently dropped.
            var overrides = (body.TemplateOverrides?.Keys ?? []).ToList();
            if (body.Network is not null) overrides.Add("network");
            if (body.Disk is not null) overrides.Add("disk");
            if (keys.Count > 0 || body.Password is not null) overrides.Add("sshKeys");
            if (isContainer) overrides.Add("type");
            if (overrides.Count > 0)
                throw new ProblemException(400, ProblemTypes.TemplateOverride, "The template fixes what this request tries to set",
                    $"template '{body.Template}' fixes {string.Join(", ", overrides.Distinct())}; with a template you may set only {string.Join(", ", DomainTemplates.UserFields)}")
                { Errors = overrides.Distinct().ToDictionary(o => o, o => new[] { $"{o} is fixed by template '{body.Template}'" }) };
        }
        else if (body.TemplateOverrides is { Count: > 0 })
        {
            Add("templateOverrides", "templateOverrides needs a template, and even then it is refused: templates fix these");
        }

        if (errors.Count > 0)
        {
            // Policy refusals are not typos: they get their own type and 403, so a client can tell "not allowed" from "malformed".
            var policy = errors.Where(e => e.Key.StartsWith(ContainerPolicy.Prefix, StringComparison.Ordinal))
                .ToDictionary(e => e.Key[ContainerPolicy.Prefix.Length..], e => e.Value.ToArray());
            if (policy.Count > 0)
                throw new ProblemException(403, ProblemTypes.PolicyRefused, "Refused by container policy",
                    string.Join("; ", policy.Select(e => $"{e.Key}: {string.Join(", ", e.Value)}")))
                { Errors = policy };
            throw ProblemException.Validation(errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
        }
        return new ValidCreate(body.Name!, type, image, cpus, memory, disk, body.Node, body.Stopped ?? false,
            body.Labels ?? new Dictionary<string, string>(), body.Description, TemplateSelector(body), keys, body.Password, container, isContainer ? null : body.Network)
        { Template = body.Template };
    }

    /// <summary>A templated VM needs a node whose agent runs libvirt (kumo-agent --libvirt labels its node so).</summary>
    private static IReadOnlyDictionary<string, string>? TemplateSelector(InstancesPost body)
    {
        if (body.Template is null) return body.NodeSelector;
        var selector = new Dictionary<string, string>(body.NodeSelector ?? new Dictionary<string, string>(), StringComparer.Ordinal)
        {
            ["kumo.dev/libvirt"] = "true",
        };
        return selector;
    }

    private static bool IsBase64(string s) =>
        s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=') && Convert.TryFromBase64String(s, new byte[s.Length], out _);

    public static void ValidateLabels(IReadOnlyDictionary<string, string>? labels, string field, Action<string, string> add)
    {
        if (labels is null) return;
        if (labels.Count > 64) add(field, "at most 64 labels");
        foreach (var (k, v) in labels)
        {
            if (k.Length is 0 or > 63 || k.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/')))
                add(field, $"label key '{k}' must be 1-63 characters of a-z, A-Z, 0-9, '-', '_', '.', '/'");
            if (v is null || v.Length > 255 || v.Any(char.IsControl))
                add(field, $"label '{k}' must have a value of at most 255 printable characters");
        }
    }

    private static long Size(string? text, long fallback, long min, long max, string field, Action<string, string> add)
    {
        if (text is null) return fallback;
        if (!ByteSize.TryParse(text, out var bytes, out var error))
        {
            add(field, error!);
            return 0;
        }
        if (bytes < min || bytes > max)
        {
            add(field, $"{field} must be between {ByteSize.Format(min)} and {ByteSize.Format(max)}, got {text}");
            return 0;
        }
        return bytes;
    }
}

public sealed record InstanceDefaults
{
    public string Image { get; init; } = "tiny";

    /// <summary>Image of a container created without --image: the busybox image every node builds itself.</summary>
    public string ContainerImage { get; init; } = "busybox";

    /// <summary>Memory limit of a container created without -m (kumod --container-memory-default).</summary>
    public long ContainerMemoryBytes { get; init; } = 512 * ByteSize.MiB;

    /// <summary>Host ports published containers get, per node, bound to 127.0.0.1 (kumod --container-port-pool).</summary>
    public int PortPoolFirst { get; init; } = 20000;

    public int PortPoolLast { get; init; } = 29999;

    /// <summary>Registries (HOST[:PORT]) nodes may pull from over plain HTTP or unverified TLS (kumod --insecure-registry).</summary>
    public IReadOnlyList<string> InsecureRegistries { get; init; } = [];

    public int Cpus { get; init; } = 1;
    public long MemoryBytes { get; init; } = 256 * ByteSize.MiB;
    public long DiskBytes { get; init; } = ByteSize.GiB;
}
