using Kumo.Core;
using Kumo.Server.Api;

namespace Kumo.Server.Instances;

/// <summary>A create request after validation and defaulting.</summary>
public sealed record ValidCreate(
    string Name, string Type, string Image, int Cpus, long MemoryBytes, long DiskBytes, string? Node, bool Stopped,
    IReadOnlyDictionary<string, string> Labels, string? Description, IReadOnlyDictionary<string, string>? NodeSelector,
    IReadOnlyList<string> SshKeys, string? Password, string? Network = null);

/// <summary>Checks every field of a request and reports all problems at once, keyed by field.</summary>
public static class InstanceRequestValidator
{
    public const int MaxCpus = 64;
    public const long MinMemory = 16 * ByteSize.MiB;
    public const long MaxMemory = 4 * ByteSize.TiB;
    public const long MinDisk = ByteSize.MiB;
    public const long MaxDisk = 16 * ByteSize.TiB;
    public const int MaxDescription = 1024;

    public static ValidCreate Validate(InstancesPost? body, InstanceDefaults defaults)
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
        var type = body.Type ?? "vm";
        if (type != "vm") Add("type", $"type '{type}' is not supported yet; use 'vm' (containers arrive with the containers issue)");
        var image = body.Image ?? defaults.Image;
        if (Names.Validate(image, "image") is { } imageError) Add("image", imageError);
        var cpus = body.Cpus ?? defaults.Cpus;
        if (cpus < 1 || cpus > MaxCpus) Add("cpus", $"cpus must be between 1 and {MaxCpus}, got {cpus}");
        var memory = Size(body.Memory, defaults.MemoryBytes, MinMemory, MaxMemory, "memory", Add);
        var disk = Size(body.Disk, defaults.DiskBytes, MinDisk, MaxDisk, "disk", Add);
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

        if (body.Network is not null && Names.Validate(body.Network, "network") is { } networkError) Add("network", networkError);

        if (errors.Count > 0)
            throw ProblemException.Validation(errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
        return new ValidCreate(body.Name!, type, image, cpus, memory, disk, body.Node, body.Stopped ?? false,
            body.Labels ?? new Dictionary<string, string>(), body.Description, body.NodeSelector, keys, body.Password, body.Network);
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
    public int Cpus { get; init; } = 1;
    public long MemoryBytes { get; init; } = 256 * ByteSize.MiB;
    public long DiskBytes { get; init; } = ByteSize.GiB;
}
