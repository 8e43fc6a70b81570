using Kumo.Agent.Images;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent;

/// <summary>
/// Decides KVM or TCG with a short, bounded boot of the tiny image under KVM (scripts/probe-kvm.sh). Nested KVM
/// on some hosts has /dev/kvm but hangs guests, so the device existing proves nothing.
/// </summary>
public static partial class AcceleratorProbe
{
    public static async Task<string> DecideAsync(AgentOptions options, ImageStore images, ILogger logger, CancellationToken ct)
    {
        if (options.Accelerator is "kvm" or "tcg") return options.Accelerator;
        var cache = Path.Combine(options.StateDir, "accelerator");
        if (File.Exists(cache))
        {
            var cached = (await File.ReadAllTextAsync(cache, ct)).Trim();
            if (cached is "kvm" or "tcg") return cached;
        }
        string result;
        if (!File.Exists("/dev/kvm"))
        {
            result = "tcg";
            LogTcg(logger, "/dev/kvm does not exist");
        }
        else if (images.FindScript("probe-kvm.sh") is not { } script)
        {
            result = "tcg";
            LogTcg(logger, "scripts/probe-kvm.sh not found");
        }
        else
        {
            await images.ResolveAsync("tiny", null, ct);
            var r = await ProcessRunner.RunAsync("bash", [script, Path.Combine(images.ImagesDir, "tiny")], ct);
            result = r.Stdout.Trim() == "kvm" ? "kvm" : "tcg";
            if (result == "tcg") LogTcg(logger, r.Stderr.Trim().Split('\n').LastOrDefault() ?? "probe failed");
            else LogKvm(logger);
        }
        await File.WriteAllTextAsync(cache, result, ct);
        return result;
    }

    [LoggerMessage(LogLevel.Warning, "KVM is not usable ({Reason}); guests run under TCG software emulation, which is slower")]
    private static partial void LogTcg(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Information, "KVM probe booted a guest; using KVM")]
    private static partial void LogKvm(ILogger logger);
}
