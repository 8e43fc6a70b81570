using System.CommandLine;
using Kumo.Core;

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

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { NodeName, AgentStateDir, ImagesDir, CapacityCpus, CapacityMemory, Accel, Labels, StopGrace })
            command.Options.Add(o);
    }

    /// <summary>Builds agent options, or returns a readable error.</summary>
    public (AgentOptions? Options, string? Error) Bind(ParseResult r, string defaultStateDir, Uri serverUrl, string? defaultImagesDir)
    {
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
        var labels = new Dictionary<string, string>();
        foreach (var l in r.GetValue(Labels) ?? [])
        {
            var i = l.IndexOf('=', StringComparison.Ordinal);
            if (i <= 0) return (null, $"--label '{l}' must be KEY=VALUE");
            labels[l[..i]] = l[(i + 1)..];
        }
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
            StopGracePeriod = r.GetValue(StopGrace) is { } g ? TimeSpan.FromSeconds(g) : TimeSpan.FromSeconds(30),
        }, null);
    }
}
