using Kumo.Core;

namespace Kumo.Server.Instances;

/// <summary>
/// What a container may ask for. Students share nodes, so nothing that reaches the host is allowed: no privileged
/// mode, no host namespaces, no devices, no added capabilities, and bind mounts only inside the owner's own storage
/// dir (<c>~/.kumo-data/USER/</c> on the node). Checked in kumod before anything is created; the agent checks the
/// resolved path again on the node, where symlinks can be seen.
/// </summary>
public static class ContainerPolicy
{
    /// <summary>Errors under keys with this prefix are policy refusals (403), not malformed input (400).</summary>
    public const string Prefix = "policy:";

    public const string StorageDirPrefix = "~/.kumo-data/";
    public const int MaxPorts = 16;
    public const int MaxVolumes = 16;
    public const int MaxEnv = 128;
    public const int MaxArgs = 256;

    public static ContainerSpec Validate(InstancesPost body, string? owner, Action<string, string> add)
    {
        void Refuse(string field, string message) => add(Prefix + field, message);

        if (body.Privileged == true) Refuse("privileged", "privileged containers are not allowed: they can take over the node");
        if (body.Network is { } net && net != "default" && net != "bridge")
            Refuse("network", $"network '{net}' is not allowed: containers get their own network namespace (host networking would expose the node)");
        if (body.Pid is { } pid && pid != "private") Refuse("pid", $"pid '{pid}' is not allowed: containers get their own PID namespace");
        if (body.Ipc is { } ipc && ipc != "private") Refuse("ipc", $"ipc '{ipc}' is not allowed: containers get their own IPC namespace");
        if (body.Devices is { Count: > 0 } devices) Refuse("devices", $"device mounts are not allowed ({string.Join(", ", devices)})");
        if (body.CapAdd is { Count: > 0 } caps) Refuse("capAdd", $"added capabilities are not allowed ({string.Join(", ", caps)})");

        var command = body.Command ?? [];
        if (command.Count > MaxArgs) add("command", $"at most {MaxArgs} arguments");
        if (command.Any(a => a is null || a.Contains('\0', StringComparison.Ordinal) || a.Length > 8192))
            add("command", "arguments must be at most 8192 characters without NUL");

        var env = body.Env ?? new Dictionary<string, string>();
        if (env.Count > MaxEnv) add("env", $"at most {MaxEnv} variables");
        foreach (var (k, v) in env)
        {
            if (k.Length is 0 or > 255 || !(char.IsAsciiLetter(k[0]) || k[0] == '_') || k.Any(c => !(char.IsAsciiLetterOrDigit(c) || c == '_')))
                add("env", $"'{k}' is not a variable name (letters, digits and '_', not starting with a digit)");
            if (v is null || v.Contains('\0', StringComparison.Ordinal) || v.Length > 32768)
                add("env", $"'{k}' must have a value of at most 32768 characters without NUL");
        }

        var ports = body.Ports ?? [];
        if (ports.Count > MaxPorts) add("ports", $"at most {MaxPorts} ports");
        foreach (var p in ports.Where(p => p is < 1 or > 65535)) add("ports", $"port {p} is not between 1 and 65535");
        if (ports.Distinct().Count() != ports.Count) add("ports", "a port is listed twice");

        var volumes = new List<VolumeMount>();
        var given = body.Volumes ?? [];
        if (given.Count > MaxVolumes) add("volumes", $"at most {MaxVolumes} volumes");
        foreach (var v in given)
        {
            if (ParseVolume(v, owner, Refuse, add) is { } mount) volumes.Add(mount);
        }
        if (volumes.Select(v => v.Target).Distinct(StringComparer.Ordinal).Count() != volumes.Count)
            add("volumes", "two volumes are mounted at the same path");

        return new ContainerSpec
        {
            Command = command,
            Env = env,
            Ports = ports.Select(p => new PortMapping { ContainerPort = p }).ToList(),
            Volumes = volumes,
            Interactive = body.Interactive == true,
            Tty = body.Tty == true,
        };
    }

    /// <summary>
    /// SRC:DST[:ro|:rw]. SRC is a path relative to the owner's storage dir, or spelled out as
    /// <c>~/.kumo-data/USER/...</c>; anything absolute, another user's dir, and any <c>..</c> are refused.
    /// </summary>
    private static VolumeMount? ParseVolume(string? spec, string? owner, Action<string, string> refuse, Action<string, string> add)
    {
        if (string.IsNullOrEmpty(spec) || spec.Contains('\0', StringComparison.Ordinal) || spec.Length > 4096)
        {
            add("volumes", "a volume is SRC:DST[:ro]");
            return null;
        }
        var parts = spec.Split(':');
        if (parts.Length is < 2 or > 3 || parts[0].Length == 0 || parts[1].Length == 0 || parts.Length == 3 && parts[2] is not ("ro" or "rw"))
        {
            add("volumes", $"'{spec}' is not SRC:DST[:ro]");
            return null;
        }
        var (src, dst) = (parts[0], parts[1]);
        var mine = owner is null ? null : StorageDirPrefix + owner;
        var where = mine is null ? "your storage dir" : $"your storage dir {mine}/";
        string relative;
        if (mine is not null && (src == mine || src.StartsWith(mine + "/", StringComparison.Ordinal)))
            relative = src[mine.Length..].TrimStart('/');
        else if (src.StartsWith('/') || src.StartsWith('~'))
        {
            refuse("volumes", $"bind mount of '{src}' is not allowed: only directories inside {where} on the node can be mounted");
            return null;
        }
        else
            relative = src;
        if (relative.Split('/').Any(c => c == ".."))
        {
            refuse("volumes", $"'{src}' leaves {where} ('..' is not allowed)");
            return null;
        }
        if (!dst.StartsWith('/') || dst.Split('/').Any(c => c == ".."))
        {
            add("volumes", $"the mount point '{dst}' must be an absolute path without '..'");
            return null;
        }
        var clean = string.Join('/', relative.Split('/').Where(c => c.Length > 0 && c != "."));
        return new VolumeMount { Source = clean, Target = dst, ReadOnly = parts.Length == 3 && parts[2] == "ro" };
    }
}
