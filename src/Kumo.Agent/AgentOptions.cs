using Kumo.Agent.Security;

namespace Kumo.Agent;

public sealed record AgentOptions
{
    /// <summary>Node name as it appears in `kumo node list`.</summary>
    public required string NodeName { get; init; }

    /// <summary>This agent's own state: instance directories, probe cache. Two agents on one host need two dirs.</summary>
    public required string StateDir { get; init; }

    /// <summary>kumod's agent gRPC endpoint (HTTP/2 over TLS).</summary>
    public Uri ServerUrl { get; init; } = new("https://127.0.0.1:7401");

    /// <summary>How to join when the agent has no certificate yet (kumo-agent --join-token); null inside kumod.</summary>
    public AgentJoinOptions? Join { get; init; }

    /// <summary>
    /// Called when kumod refuses the node's certificate (revoked, unknown), before trying again. kumod --all-in-one
    /// issues its own agent a new certificate here; a separate agent has no way back but a new join token.
    /// </summary>
    public Func<CancellationToken, Task>? Reenroll { get; init; }

    /// <summary>Image cache; defaults to STATE/images. Agents on one host may share it.</summary>
    public string? ImagesDir { get; init; }

    public string? ScriptsDir { get; init; }

    /// <summary>Declared capacity; defaults to the host's CPUs and memory.</summary>
    public int? CapacityCpus { get; init; }

    public long? CapacityMemoryBytes { get; init; }

    /// <summary>auto (probe), kvm or tcg.</summary>
    public string Accelerator { get; init; } = "auto";

    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    /// <summary>How long a guest has to power off cleanly before it is forced.</summary>
    public TimeSpan StopGracePeriod { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a booting guest has to signal readiness before the instance goes to error.</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromSeconds(600);

    /// <summary>For images with readiness 'timeout': they count as ready this long after launch.</summary>
    public TimeSpan ReadyDelay { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Re-check every instance at least this often (guests that died, missed signals).</summary>
    public TimeSpan ResyncInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Users' storage dirs (DIR/USER/); container volumes may mount only inside their owner's. Default ~/.kumo-data.</summary>
    public string? UserDataDir { get; init; }

    public string ResolvedUserDataDir => UserDataDir ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".kumo-data");

    /// <summary>How often the node and its guests are sampled for monitoring and measured usage.</summary>
    /// <summary>QEMU's max-bandwidth for migrations this node sends (bytes/s); null keeps QEMU's default.</summary>
    public long? MigrationBandwidth { get; init; }

    public TimeSpan MetricsInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// This node's underlay address: VXLAN tunnels to other nodes start and end here. Null turns VXLAN off, and the
    /// node's networks stay local to it (guests on other nodes are not connected).
    /// </summary>
    public string? VxlanAddress { get; init; }

    /// <summary>
    /// libvirtd to run templated VMs through (kumo-agent --libvirt URI), e.g. qemu:///system; null: this node has no
    /// libvirt driver and kumod places no templated VM here.
    /// </summary>
    public string? LibvirtUri { get; init; }

    /// <summary>The node label a libvirt-capable agent adds; kumod requires it of templated VMs' nodes.</summary>
    public const string LibvirtLabel = "kumo.dev/libvirt";

    public string ResolvedImagesDir => ImagesDir ?? Path.Combine(StateDir, "images");
}
