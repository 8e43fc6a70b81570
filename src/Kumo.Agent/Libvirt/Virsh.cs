namespace Kumo.Agent.Libvirt;

/// <summary>
/// Talks to libvirtd through virsh, with domain XML in and out. NuGet has no maintained libvirt binding (the few
/// packages there wrap libvirt 1.x-era APIs and are years unpublished), and P/Invoking libvirt.so ourselves would
/// be a second copy of virsh's work; virsh ships with libvirt itself (Debian libvirt-clients) and its XML is the
/// stable interface anyway. Every call is a short process, which is fine at lifecycle rates.
/// </summary>
public sealed class Virsh(string uri, string binary = "virsh")
{
    public string Uri { get; } = uri;

    public async Task<ProcessResult> RunAsync(CancellationToken ct, params string[] args)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // A hung libvirtd must not hang the instance's worker for ever.
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        return await ProcessRunner.RunAsync(binary, ["-q", "-c", Uri, .. args], timeout.Token);
    }

    /// <summary>Runs and throws with virsh's own message on failure.</summary>
    public async Task<string> CheckAsync(CancellationToken ct, params string[] args)
    {
        var r = await RunAsync(ct, args);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"virsh {args[0]} failed: {Message(r)}");
        return r.Stdout;
    }

    /// <summary>True for libvirt's "no such domain" answers, which callers treat as "already gone".</summary>
    public static bool IsNoDomain(ProcessResult r) =>
        r.Stderr.Contains("failed to get domain", StringComparison.Ordinal) || r.Stderr.Contains("Domain not found", StringComparison.Ordinal);

    public static string Message(ProcessResult r) =>
        string.Join(" | ", r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Take(3));
}
