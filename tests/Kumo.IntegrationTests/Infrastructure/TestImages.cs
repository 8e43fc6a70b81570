using System.Diagnostics;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>The tiny image, built once per machine by the project's own script and shared by every test.</summary>
public static class TestImages
{
    private static readonly Lazy<Task<string>> Built = new(BuildAsync);

    /// <summary>Directory holding tiny/ (pass as --images-dir).</summary>
    public static Task<string> DirAsync() => Built.Value;

    private static async Task<string> BuildAsync()
    {
        var dir = Environment.GetEnvironmentVariable("KUMO_TEST_IMAGES") is { Length: > 0 } env ? env : "/var/tmp/kumo-test-images";
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(Repo.Root, "scripts", "build-tiny-image.sh"));
        psi.ArgumentList.Add(Path.Combine(dir, "tiny"));
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException("build-tiny-image.sh failed: " + await stderr);
        return dir;
    }
}
