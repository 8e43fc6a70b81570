using System.Diagnostics;

namespace Kumo.Bench;

/// <summary>Where the repository and the tiny VM image are.</summary>
internal static class Repo
{
    /// <summary>The images directory kumod gets (--images-dir); the image itself is in its "tiny" subdirectory.</summary>
    public const string ImagesDir = "/tmp/kumo-bench-images";

    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "Kumo.slnx"))) return d.FullName;
            }
        }
        throw new InvalidOperationException("cannot find the repository root (Kumo.slnx)");
    }

    public static bool HasQemu() =>
        new[] { "qemu-system-x86_64", "qemu-img" }.All(tool =>
            (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(dir => File.Exists(Path.Combine(dir, tool))));

    /// <summary>Builds the tiny image once with the project's script (a no-op when it is complete); returns its directory.</summary>
    public static async Task<string> EnsureTinyImageAsync(CancellationToken ct)
    {
        var dir = Path.Combine(ImagesDir, "tiny");
        var psi = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(Root, "scripts", "build-tiny-image.sh"));
        psi.ArgumentList.Add(dir);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.StandardOutput.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        if (p.ExitCode != 0) throw new InvalidOperationException($"build-tiny-image.sh failed: {await stderr}");
        return dir;
    }
}
