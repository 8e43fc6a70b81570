using System.CommandLine;
using Kumo.Agent.Security;
using Kumo.Core;
using Kumo.Core.Security;

namespace Kumo.Agent;

/// <summary>The agent's command-line options, shared by kumo-agent and kumod --all-in-one.</summary>
public sealed class AgentCommandLine
{
    public Option<string> NodeName { get; } = new("--node-name") { Description = "Node name shown in `kumo node list` (default: host name)" };
    public Option<string> AgentStateDir { get; } = new("--agent-state-dir") { Description = "Agent state directory (default: STATE/agent)" };
    public Option<string> ImagesDir { get; } = new("--images-dir") { Description = "Image cache (default: STATE/images); agents on one host may share it" };
    public Option<int?> CapacityCpus { get; } = new("--capacity-cpus") { Description = "Declared CPUs (default: all host CPUs)" };
    public Option<string> CapacityMemory { get; } = new("--capacity-memory") { Description = "Declared memory, e.g. 4G (default: host memory)" };
    public Option<string> Accel { get; } = new("--accel") { Description = "auto (probe KVM, fall back to TCG), kvm or tcg", DefaultValueFactory = _ => "auto" };
    public Option<string[]> Labels { get; } = new("--label") { Description = "Node label KEY=VALUE (repeatable)", AllowMultipleArgumentsPerToken = false };
    public Option<double?> StopGrace { get; } = new("--stop-grace-seconds") { Description = "Seconds a guest gets to power off before it is forced (default 30)" };
    public Option<double?> ReadyTimeout { get; } = new("--ready-timeout-seconds") { Description = "How long a booting guest may take to signal readiness before it is in error (default 600; a Debian boot under TCG takes minutes)" };
    public Option<double?> MetricsInterval { get; } = new("--metrics-interval-seconds") { Description = "How often the node and its guests are sampled for monitoring (default 5)" };

    public Option<string> MigrationBandwidth { get; } = new("--migration-bandwidth") { Description = "Cap on live-migration traffic this node sends, bytes per second, e.g. 64M (default: QEMU's, 128M)" };
    public Option<string> UserDataDir { get; } = new("--user-data-dir") { Description = "Where users' storage dirs live; containers may mount only DIR/USER/... (default: ~/.kumo-data)" };
    public Option<string> VxlanAddress { get; } = new("--vxlan-address") { Description = "This node's underlay IPv4 address: networks span nodes by VXLAN (UDP 4789) between these addresses (default: off, networks stay on one node)" };
    public Option<string> Libvirt { get; } = new("--libvirt") { Description = "Run VMs made from domain templates through this libvirtd, e.g. qemu:///system (default: no libvirt driver)" };
    public Option<string> JoinToken { get; } = new("--join-token") { Description = "One-time token from `kumo node add-token`: join kumod and get this node's certificate" };
    public Option<string> CaFingerprint { get; } = new("--ca-fingerprint") { Description = "SHA-256 fingerprint of kumod's CA (printed by `kumo node add-token`), checked before joining" };
    public Option<string> CaFile { get; } = new("--ca") { Description = "kumod's CA certificate (PEM), instead of --ca-fingerprint" };

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { NodeName, AgentStateDir, ImagesDir, CapacityCpus, CapacityMemory, Accel, Labels, StopGrace, ReadyTimeout, UserDataDir, MetricsInterval, MigrationBandwidth, VxlanAddress, Libvirt })
            command.Options.Add(o);
    }

    /// <summary>The options a separate agent needs to join; kumod --all-in-one issues its agent a certificate itself.</summary>
    public void AddJoinOptionsTo(Command command)
    {
        foreach (var o in new Option[] { JoinToken, CaFingerprint, CaFile })
            command.Options.Add(o);
    }

    public static (AgentJoinOptions? Join, string? Error) BindJoin(ParseResult r, AgentCommandLine line)
    {
        var token = r.GetValue(line.JoinToken);
        var fingerprintText = r.GetValue(line.CaFingerprint);
        var caFile = r.GetValue(line.CaFile);
        string? fingerprint = null;
        if (fingerprintText is not null && (fingerprint = CertificateFingerprint.Normalize(fingerprintText)) is null)
            return (null, $"--ca-fingerprint '{fingerprintText}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)");
        if (caFile is not null && !File.Exists(caFile))
            return (null, $"--ca: {caFile} does not exist");
        if (token is null && (fingerprint is not null || caFile is not null))
            return (null, "--ca-fingerprint and --ca are for joining: pass --join-token too");
        return (token is null ? null : new AgentJoinOptions { Token = token.Trim(), CaFingerprint = fingerprint, CaFile = caFile }, null);
    }

    /// <summary>Builds agent options, or returns a readable error.</summary>
    public (AgentOptions? Options, string? Error) Bind(ParseResult r, string defaultStateDir, Uri serverUrl, string? defaultImagesDir)
    {
        if (serverUrl.Scheme != Uri.UriSchemeHttps)
            return (null, $"kumod's agent endpoint speaks TLS only: use https://, not {serverUrl}");
        long? memory = null;
        if (r.GetValue(CapacityMemory) is { } m)
        {
            if (!ByteSize.TryParse(m, out var bytes, out var err)) return (null, $"--capacity-memory: {err}");
            memory = bytes;
        }
        var cpus = r.GetValue(CapacityCpus);
        if (cpus is < 1) return (null, "--capacity-cpus must be at least 1");
        var accel = r.GetValue(Accel) ?? "auto";
        if (accel is not ("auto" or "kvm" or "tcg")) return (null, $"--accel must be auto, kvm or tcg, not '{accel}'");
        var name = r.GetValue(NodeName) ?? Environment.MachineName.ToLowerInvariant();
        if (Names.Validate(name, "node name") is { } nameError) return (null, $"--node-name: {nameError}");
        var metricsInterval = r.GetValue(MetricsInterval) ?? 5;
        if (metricsInterval is < 0.1 or > 3600) return (null, "--metrics-interval-seconds must be between 0.1 and 3600");
        long? bandwidth = null;
        if (r.GetValue(MigrationBandwidth) is { } b)
        {
            if (!ByteSize.TryParse(b, out var bytes, out var err) || bytes < 1) return (null, $"--migration-bandwidth: {err ?? "must be positive"}");
            bandwidth = bytes;
        }
        var vxlan = r.GetValue(VxlanAddress);
        if (vxlan is not null && Vxlan.ValidateUnderlay(vxlan) is { } vxlanError) return (null, $"--vxlan-address: {vxlanError}");
        var labels = new Dictionary<string, string>();
        foreach (var l in r.GetValue(Labels) ?? [])
        {
            var i = l.IndexOf('=', StringComparison.Ordinal);
            if (i <= 0) return (null, $"--label '{l}' must be KEY=VALUE");
            labels[l[..i]] = l[(i + 1)..];
        }
        var libvirt = r.GetValue(Libvirt);
        if (libvirt is not null && !libvirt.Contains("://", StringComparison.Ordinal)) return (null, $"--libvirt '{libvirt}' is not a libvirt URI (e.g. qemu:///system)");
        return (new AgentOptions
        {
            NodeName = name,
            StateDir = r.GetValue(AgentStateDir) ?? defaultStateDir,
            ServerUrl = serverUrl,
            ImagesDir = r.GetValue(ImagesDir) ?? defaultImagesDir,
            CapacityCpus = cpus,
            CapacityMemoryBytes = memory,
            Accelerator = accel,
            Labels = labels,
            UserDataDir = r.GetValue(UserDataDir) is { } u ? Path.GetFullPath(u) : null,
            StopGracePeriod = r.GetValue(StopGrace) is { } g ? TimeSpan.FromSeconds(g) : TimeSpan.FromSeconds(30),
            ReadyTimeout = r.GetValue(ReadyTimeout) is { } rt ? TimeSpan.FromSeconds(rt) : TimeSpan.FromSeconds(600),
            MetricsInterval = TimeSpan.FromSeconds(metricsInterval),
            MigrationBandwidth = bandwidth,
            VxlanAddress = vxlan,
            LibvirtUri = libvirt,
        }, null);
    }
}
