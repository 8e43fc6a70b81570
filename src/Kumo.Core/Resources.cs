namespace Kumo.Core;

public sealed record Node
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string State { get; init; }
    public required string Accelerator { get; init; }
    public int Cpus { get; init; }
    public long MemoryBytes { get; init; }
    public int UsedCpus { get; init; }
    public long UsedMemoryBytes { get; init; }
    public int FreeCpus { get; init; }
    public long FreeMemoryBytes { get; init; }
    public int Instances { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public DateTimeOffset? LastHeartbeat { get; init; }
    public string? AgentVersion { get; init; }

    /// <summary>The node's underlay address for VXLAN; null when its agent has VXLAN off (its networks stay node-local).</summary>
    public string? VxlanAddress { get; init; }

    public long Version { get; init; }
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>The agent's latest sample (monitoring); null until one arrived since kumod started.</summary>
    public NodeMetrics? Metrics { get; init; }
}

public sealed record Image
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Project { get; init; }
    public string Type { get; init; } = "vm";
    public required string Readiness { get; init; }
    public string? Description { get; init; }
    public bool BuiltIn { get; init; }

    /// <summary>For imported and built images: SHA-256 (hex) of the stored qcow2 file; null for built-in boot files.</summary>
    public string? Sha256 { get; init; }

    /// <summary>Bytes of the stored qcow2 file.</summary>
    public long? SizeBytes { get; init; }

    /// <summary>The guest disk's size as the guest sees it; instances get at least this much disk.</summary>
    public long? VirtualSizeBytes { get; init; }

    /// <summary>What the upload was, as detected from its content: qcow2, raw, vmdk, vpc (VHD), vhdx, box, ova.</summary>
    public string? SourceFormat { get; init; }

    /// <summary>For container images built with kumo ct build: the node whose engine holds it (its containers run there).</summary>
    public string? Node { get; init; }

    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>Body of POST /images/build-base: a base image Kumo builds itself from a distribution's package mirror.</summary>
public sealed record ImagesBuildBasePost
{
    /// <summary>Which distribution; Kumo builds "debian" (Debian 12 from the Debian mirror).</summary>
    public string? Distro { get; init; }

    /// <summary>vm (a bootable qcow2 with cloud-init) or container (a rootfs imported into each node's engine).</summary>
    public string? Type { get; init; }
}

public sealed record Instance
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Project { get; init; }
    public string Type { get; init; } = "vm";
    public required string Image { get; init; }
    public int Cpus { get; init; }
    public long MemoryBytes { get; init; }
    public long DiskBytes { get; init; }
    public string? Node { get; init; }
    public required string State { get; init; }
    public required string DesiredPower { get; init; }
    public string? StatusMessage { get; init; }
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
    public string? Description { get; init; }

    /// <summary>The instance's NICs on tenant networks, with the addresses IPAM gave them.</summary>
    public IReadOnlyList<NetworkAddress> Nics { get; init; } = [];

    /// <summary>For type container: what runs and how it is reached; null for VMs.</summary>
    public ContainerSpec? Container { get; init; }

    /// <summary>The libvirt domain template the VM was made from (it runs through libvirtd); null for plain QEMU VMs.</summary>
    public string? Template { get; init; }

    /// <summary>The user who created it (engine-level container names and proxy routes carry it).</summary>
    public string? Owner { get; init; }

    /// <summary>
    /// Containers with a published port: where kumod's reverse proxy serves the first one
    /// (http://NAME.USER.DOMAIN:PORT/ and http://DOMAIN:PORT/u/USER/NAME/); the routes answer while it runs.
    /// </summary>
    public IReadOnlyList<string>? Urls { get; init; }

    public long Version { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
}

/// <summary>A container's process, environment, published ports and volumes, as stored with the instance.</summary>
public sealed record ContainerSpec
{
    /// <summary>The command and its arguments; empty runs the image's default command.</summary>
    public IReadOnlyList<string> Command { get; init; } = [];

    public IReadOnlyDictionary<string, string> Env { get; init; } = new Dictionary<string, string>();

    public IReadOnlyList<PortMapping> Ports { get; init; } = [];

    public IReadOnlyList<VolumeMount> Volumes { get; init; } = [];

    /// <summary>The main process's stdin stays open (run -i), so someone attached can type to it.</summary>
    public bool Interactive { get; init; }

    /// <summary>The main process runs on a terminal (run -t).</summary>
    public bool Tty { get; init; }

    /// <summary>
    /// A fractional CPU limit (run --cpus 0.5), set as a CFS quota; null means the instance's whole vCPUs. Capacity
    /// and quotas count it rounded up, as the instance's cpus.
    /// </summary>
    public double? CpuLimit { get; init; }
}

/// <summary>One route of kumod's reverse proxy (GET /api/v1/proxy/routes, admins only).</summary>
public sealed record ProxyRoute
{
    public required string InstanceId { get; init; }
    public required string Project { get; init; }
    public required string Owner { get; init; }
    public required string Name { get; init; }

    /// <summary>Where requests go: the container's first published port on its node.</summary>
    public required string Destination { get; init; }

    public IReadOnlyList<string> Urls { get; init; } = [];
}

/// <summary>A container port published on the node's loopback at a host port taken from kumod's pool.</summary>
public sealed record PortMapping
{
    public int ContainerPort { get; init; }
    public int HostPort { get; init; }
    public string HostIp { get; init; } = "127.0.0.1";
}

/// <summary>
/// A bind mount of a directory inside the owner's storage on the node (<c>~/.kumo-data/USER/</c>): Source is
/// relative to that directory.
/// </summary>
public sealed record VolumeMount
{
    public required string Source { get; init; }
    public required string Target { get; init; }
    public bool ReadOnly { get; init; }
}

/// <summary>Body of POST /instances.</summary>
public sealed record InstancesPost
{
    public string? Name { get; init; }
    public string? Type { get; init; }
    public string? Image { get; init; }
    public int? Cpus { get; init; }

    /// <summary>Containers: a CPU limit that may be fractional (0.5 = half a CPU); cpus becomes it rounded up.</summary>
    public double? CpuLimit { get; init; }

    /// <summary>Memory as a size string ("256M") or plain bytes.</summary>
    public string? Memory { get; init; }

    public string? Disk { get; init; }
    public string? Node { get; init; }

    /// <summary>Create without booting.</summary>
    public bool? Stopped { get; init; }

    public IReadOnlyDictionary<string, string>? Labels { get; init; }
    public string? Description { get; init; }

    /// <summary>Only nodes carrying all of these labels are considered.</summary>
    public IReadOnlyDictionary<string, string>? NodeSelector { get; init; }

    /// <summary>OpenSSH public keys the guest authorizes (through a cloud-init NoCloud seed; images with cloud-init only).</summary>
    public IReadOnlyList<string>? SshKeys { get; init; }

    /// <summary>A password for the guest's default user (cloud-init); stored only as a SHA-512 crypt hash.</summary>
    public string? Password { get; init; }

    /// <summary>VMs: reserve the VM for a window instead of creating it now (UTC); it is created at the start and released at the end.</summary>
    public DateTimeOffset? Start { get; init; }

    /// <summary>VMs: end of the reservation window (UTC); required with <see cref="Start"/>.</summary>
    public DateTimeOffset? End { get; init; }

    /// <summary>Containers: the command and its arguments (default: the image's).</summary>
    public IReadOnlyList<string>? Command { get; init; }

    /// <summary>Containers: environment variables.</summary>
    public IReadOnlyDictionary<string, string>? Env { get; init; }

    /// <summary>Containers: ports to publish; each gets a host port from kumod's pool, bound to 127.0.0.1.</summary>
    public IReadOnlyList<int>? Ports { get; init; }

    /// <summary>Containers: SRC:DST[:ro] bind mounts, SRC inside the owner's storage dir (~/.kumo-data/USER/) on the node.</summary>
    public IReadOnlyList<string>? Volumes { get; init; }

    /// <summary>Containers: keep the main process's stdin open for kumo ct attach (docker run -i).</summary>
    public bool? Interactive { get; init; }

    /// <summary>Containers: give the main process a terminal (docker run -t).</summary>
    public bool? Tty { get; init; }

    // The fields below are always refused for containers. They are part of the body so a request asking for them
    // gets a clear refusal instead of being silently run without them.

    public bool? Privileged { get; init; }

    /// <summary>
    /// VMs: a tenant network of the instance's project to attach to (DHCP address from kumod's IPAM); none: user-mode
    /// NAT only. Containers: only the default is allowed; "host" is refused.
    /// </summary>
    public string? Network { get; init; }

    public string? Pid { get; init; }
    public string? Ipc { get; init; }
    public IReadOnlyList<string>? Devices { get; init; }
    public IReadOnlyList<string>? CapAdd { get; init; }

    /// <summary>VMs: make it from this admin's libvirt domain template (kumo template list); it runs through libvirtd.</summary>
    public string? Template { get; init; }

    /// <summary>
    /// With a template, a user may set only name, cpus, memory and image. Anything asked for here (network, disk.bus,
    /// disk.format, ...) is refused with template-override: the field exists so such a request is told no, not ignored.
    /// </summary>
    public IReadOnlyDictionary<string, string>? TemplateOverrides { get; init; }
}

/// <summary>Body of PUT /instances/{name}: the fields a user may change in place.</summary>
public sealed record InstancePut
{
    public IReadOnlyDictionary<string, string>? Labels { get; init; }
    public string? Description { get; init; }
}

public sealed record Operation
{
    public required string Id { get; init; }
    public required string Kind { get; init; }
    public required string Target { get; init; }
    public required string Status { get; init; }
    public string? Message { get; init; }
    public string? Error { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
}

/// <summary>One line of an operation's progress stream (SSE).</summary>
public sealed record OperationEvent
{
    public required string OperationId { get; init; }
    public required string Status { get; init; }
    public string? Message { get; init; }
    public DateTimeOffset At { get; init; }
}

public sealed record ServerInfo
{
    public required string Version { get; init; }
    public required string StateDir { get; init; }
    public int Nodes { get; init; }
}

/// <summary>Asks for a one-time token with which a new machine's agent joins (POST /api/v1/nodes/tokens).</summary>
public sealed record NodeTokensPost
{
    /// <summary>How long the token can be used, e.g. 30m, 1h, 2d (default 1h, at most 7d).</summary>
    public string? Ttl { get; init; }
}

/// <summary>A join token, shown once: kumod keeps only its hash.</summary>
public sealed record NodeToken
{
    public required string Token { get; init; }
    public DateTimeOffset ExpiresAt { get; init; }

    /// <summary>SHA-256 of kumod's CA certificate, for <c>kumo-agent --ca-fingerprint</c>.</summary>
    public required string CaFingerprint { get; init; }
}

/// <summary>A VM's gdb stub (GET/POST/DELETE /api/v1/instances/NAME/debug).</summary>
public sealed record DebugStub
{
    public bool Enabled { get; init; }

    /// <summary>Where gdb connects: the admin's bind address (the node's name when the stub listens on every address).</summary>
    public string? Host { get; init; }

    public int? Port { get; init; }

    /// <summary>True once the node confirmed that QEMU listens there.</summary>
    public bool Active { get; init; }

    /// <summary>The line to give gdb: "target remote HOST:PORT".</summary>
    public string? Target { get; init; }
}

/// <summary>POST /api/v1/instances/NAME/migrate: move a running VM to another node without stopping it (admins).</summary>
public sealed record InstanceMigratePost
{
    /// <summary>The node to move to.</summary>
    public string? Node { get; init; }
}
