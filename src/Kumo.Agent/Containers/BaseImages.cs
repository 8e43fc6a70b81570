using System.Formats.Tar;

namespace Kumo.Agent.Containers;

/// <summary>
/// Container base images built on the node without a registry. <c>busybox</c> is a rootfs holding Debian's
/// busybox-static and its applet links, imported into the engine as <c>localhost/busybox:latest</c>, so
/// <c>FROM busybox</c> resolves locally. <c>debian</c> is a Debian 12 minbase rootfs that scripts/build-debian-image.sh
/// makes with mmdebstrap from the Debian mirror, imported as <c>localhost/debian:latest</c> (so <c>FROM debian</c> works).
/// </summary>
public static partial class BaseImages
{
    public const string BusyboxReference = "localhost/busybox:latest";
    public const string DebianReference = "localhost/debian:latest";

    // One mmdebstrap at a time per agent: two containers wanting debian at once wait for the same build.
    private static readonly SemaphoreSlim DebianBuild = new(1, 1);

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

    /// <summary>
    /// Builds and imports the debian image unless the engine already has it (idempotent; about a minute and a half of
    /// mmdebstrap on a 2-core machine the first time on a node).
    /// </summary>
    public static async Task EnsureDebianAsync(ContainerEngine engine, CancellationToken ct)
    {
        if ((await engine.PodmanAsync(["image", "exists", DebianReference], ct)).ExitCode == 0) return;
        await DebianBuild.WaitAsync(ct);
        var work = Path.Combine(engine.Dir, "tmp", $"debian-{Guid.NewGuid():n}");
        try
        {
            if ((await engine.PodmanAsync(["image", "exists", DebianReference], ct)).ExitCode == 0) return;
            var script = FindScript("build-debian-image.sh")
                ?? throw new FileNotFoundException("scripts/build-debian-image.sh not found; set KUMO_SCRIPTS_DIR");
            Directory.CreateDirectory(work);
            var tar = Path.Combine(work, "rootfs.tar");
            var built = await ProcessRunner.RunAsync("bash", [script, "container", tar], ct);
            if (built.ExitCode != 0)
                throw new InvalidOperationException($"building the debian image failed: {LastLines(built.Stderr)}");
            var r = await engine.PodmanAsync(["import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", "CMD [\"bash\"]", tar, DebianReference], ct);
            if (r.ExitCode != 0)
                throw new InvalidOperationException($"importing the debian image failed: {r.Stderr.Trim()}");
        }
        finally
        {
            DebianBuild.Release();
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Whether a Containerfile builds on the debian image (FROM debian, debian:latest, localhost/debian[:latest]).</summary>
    public static bool NamesDebian(string? dockerfile) =>
        dockerfile is not null && FromDebian().IsMatch(dockerfile);

    [System.Text.RegularExpressions.GeneratedRegex(@"^\s*FROM\s+(?:--\S+\s+)*(?:localhost/)?debian(?::latest)?(?:\s|$)",
        System.Text.RegularExpressions.RegexOptions.IgnoreCase | System.Text.RegularExpressions.RegexOptions.Multiline)]
    private static partial System.Text.RegularExpressions.Regex FromDebian();

    /// <summary>The text of one member of a (checked) build context tar, or null when it is not there.</summary>
    public static async Task<string?> ReadMemberAsync(string tar, string member, CancellationToken ct)
    {
        await using var file = File.OpenRead(tar);
        await using var reader = new TarReader(file);
        while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
        {
            if (Kumo.Core.BuildContexts.Normalize(entry.Name) != member || entry.DataStream is null) continue;
            using var text = new StreamReader(entry.DataStream);
            return await text.ReadToEndAsync(ct);
        }
        return null;
    }

    /// <summary>KUMO_SCRIPTS_DIR, else the repo's scripts/ found by walking up from the binary (as ImageStore does).</summary>
    private static string? FindScript(string name)
    {
        if (Environment.GetEnvironmentVariable("KUMO_SCRIPTS_DIR") is { Length: > 0 } env && File.Exists(Path.Combine(env, name)))
            return Path.Combine(env, name);
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "scripts", name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    private static string LastLines(string s) => string.Join(" | ", s.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(3));
}
