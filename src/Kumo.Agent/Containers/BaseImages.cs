using System.Formats.Tar;

namespace Kumo.Agent.Containers;

/// <summary>
/// Container base images built on the node without a registry. <c>busybox</c> is a rootfs holding Debian's
/// busybox-static and its applet links, imported into the engine as <c>localhost/busybox:latest</c>, so
/// <c>FROM busybox</c> resolves locally.
/// </summary>
public static class BaseImages
{
    public const string BusyboxReference = "localhost/busybox:latest";

    private static readonly string[] Changes =
    [
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", "CMD [\"sh\"]",
    ];

    /// <summary>Imports the busybox image unless the engine already has it (idempotent).</summary>
    public static async Task EnsureBusyboxAsync(ContainerEngine engine, CancellationToken ct, string busybox = "/bin/busybox")
    {
        var exists = await engine.PodmanAsync(["image", "exists", BusyboxReference], ct);
        if (exists.ExitCode == 0) return;
        if (!File.Exists(busybox))
            throw new FileNotFoundException($"{busybox} is missing: install busybox-static (scripts/install-deps.sh does)");
        var work = Path.Combine(engine.Dir, "tmp", $"busybox-{Guid.NewGuid():n}");
        try
        {
            var rootfs = Path.Combine(work, "rootfs");
            var bin = Path.Combine(rootfs, "bin");
            Directory.CreateDirectory(bin);
            foreach (var d in new[] { "etc", "tmp", "proc", "sys", "dev", "root", "var", "usr" })
                Directory.CreateDirectory(Path.Combine(rootfs, d));
            File.Copy(busybox, Path.Combine(bin, "busybox"));
            var applets = await ProcessRunner.RunAsync(busybox, ["--list"], ct);
            foreach (var applet in applets.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                // The list names busybox itself: linking it would replace the binary with a link to itself.
                if (applet is "busybox" || applet.Contains('/', StringComparison.Ordinal)) continue;
                File.CreateSymbolicLink(Path.Combine(bin, applet), "busybox");
            }
            await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n", ct);
            await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "group"), "root:x:0:\n", ct);
            var tar = Path.Combine(work, "rootfs.tar");
            await TarFile.CreateFromDirectoryAsync(rootfs, tar, includeBaseDirectory: false, ct);
            var r = await engine.PodmanAsync(["import", .. Changes, tar, BusyboxReference], ct);
            if (r.ExitCode != 0)
                throw new InvalidOperationException($"importing the busybox image failed: {r.Stderr.Trim()}");
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        }
    }
}
