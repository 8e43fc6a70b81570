using System.Text.Json;
using Kumo.Core;

namespace Kumo.Agent.Images;

/// <summary>What image.json in an image directory says.</summary>
public sealed record ImageManifest
{
    public required string Name { get; init; }
    public string? Kernel { get; init; }
    public string? Initrd { get; init; }
    public string? Cmdline { get; init; }
    public string? Disk { get; init; }
    public string Readiness { get; init; } = ReadinessModes.Marker;
}

/// <summary>A resolved image on this node: absolute paths to its boot files.</summary>
public sealed record ImageFiles(string Name, string? Kernel, string? Initrd, string Cmdline, string? BaseDisk, string Readiness);

/// <summary>
/// The node's image cache: one directory per image with an image.json. Built-in images are built on first use by
/// the project's own script from Debian packages, so a fresh node needs no manual step.
/// </summary>
public sealed class ImageStore(string imagesDir, string? scriptsDir)
{
    private readonly SemaphoreSlim _buildLock = new(1, 1);
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web);

    public string ImagesDir { get; } = imagesDir;

    public async Task<ImageFiles> ResolveAsync(string name, IProgress<string>? progress, CancellationToken ct)
    {
        var dir = Path.Combine(ImagesDir, name);
        var manifestPath = Path.Combine(dir, "image.json");
        if (!File.Exists(manifestPath))
        {
            if (name != "tiny")
                throw new FileNotFoundException($"image '{name}' is not present on this node ({dir})");
            await BuildTinyAsync(dir, progress, ct);
        }
        var m = JsonSerializer.Deserialize<ImageManifest>(await File.ReadAllTextAsync(manifestPath, ct), JsonOptions)
            ?? throw new InvalidDataException($"{manifestPath} is empty");
        string? Abs(string? f) => f is null ? null : Path.Combine(dir, f);
        return new ImageFiles(m.Name, Abs(m.Kernel), Abs(m.Initrd), m.Cmdline ?? "console=ttyS0", Abs(m.Disk), m.Readiness);
    }

    private async Task BuildTinyAsync(string dir, IProgress<string>? progress, CancellationToken ct)
    {
        await _buildLock.WaitAsync(ct);
        try
        {
            if (File.Exists(Path.Combine(dir, "image.json"))) return;
            var script = FindScript("build-tiny-image.sh")
                ?? throw new FileNotFoundException("scripts/build-tiny-image.sh not found; set KUMO_SCRIPTS_DIR");
            progress?.Report("building the tiny image from Debian packages (first use on this node)");
            var r = await ProcessRunner.RunAsync("bash", [script, dir], ct);
            if (r.ExitCode != 0)
                throw new InvalidOperationException($"building image tiny failed: {LastLines(r.Stderr + r.Stdout)}");
        }
        finally
        {
            _buildLock.Release();
        }
    }

    public string? FindScript(string name)
    {
        foreach (var root in Roots())
        {
            var p = Path.Combine(root, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    private IEnumerable<string> Roots()
    {
        if (scriptsDir is not null) yield return scriptsDir;
        if (Environment.GetEnvironmentVariable("KUMO_SCRIPTS_DIR") is { Length: > 0 } env) yield return env;
        // Walk up from the binary: works from the repo's build output and from artifacts/bin.
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            yield return Path.Combine(d.FullName, "scripts");
    }

    private static string LastLines(string s) => string.Join(" | ", s.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(3));
}
