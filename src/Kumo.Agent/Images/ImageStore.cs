using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using Grpc.Core;
using Kumo.Core;
using Kumo.Protocol;

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
public sealed class ImageStore(string imagesDir, string? scriptsDir, string? importedDir = null)
{
    private readonly SemaphoreSlim _buildLock = new(1, 1);
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web);

    private readonly ConcurrentDictionary<string, SemaphoreSlim> _fetchLocks = new();
    private volatile AgentControl.AgentControlClient? _server;
    private string? _nodeId;

    public string ImagesDir { get; } = imagesDir;

    /// <summary>
    /// Imported images fetched from kumod, one verified qcow2 per image id (ids never change content). Kept in the
    /// agent's own state dir: the built-in images dir may be shared by several agents on one machine.
    /// </summary>
    public string ImportedDir { get; } = importedDir ?? Path.Combine(imagesDir, ".imported");

    /// <summary>The connection imported images are fetched over; set while the agent is connected.</summary>
    public void Attach(AgentControl.AgentControlClient client, string nodeId)
    {
        _nodeId = nodeId;
        _server = client;
    }

    public void Detach() => _server = null;

    /// <summary>
    /// An instance's image: a built-in one by name, or (when kumod sent a checksum) an imported disk that boots with
    /// its own bootloader, fetched once into the node's cache.
    /// </summary>
    public async Task<ImageFiles> ResolveAsync(string name, string? importedId, string? sha256, string readiness,
        IProgress<string>? progress, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(importedId) || string.IsNullOrEmpty(sha256))
            return await ResolveAsync(name, progress, ct);
        var disk = await FetchAsync(name, importedId, sha256, progress, ct);
        return new ImageFiles(name, null, null, "", disk, readiness);
    }

    private async Task<string> FetchAsync(string name, string imageId, string sha256, IProgress<string>? progress, CancellationToken ct)
    {
        if (imageId.Contains('/') || imageId.Contains("..", StringComparison.Ordinal))
            throw new InvalidDataException($"image id '{imageId}' is not a plain id");
        var path = Path.Combine(ImportedDir, imageId + ".qcow2");
        var gate = _fetchLocks.GetOrAdd(imageId, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        try
        {
            if (File.Exists(path)) return path;
            var server = _server ?? throw new IOException($"image '{name}' is not cached on this node and kumod is not connected");
            Directory.CreateDirectory(ImportedDir);
            // A partial download never has the final name, so a crash leaves only a .part that the next fetch replaces.
            var part = path + ".part";
            using var call = server.ImageFetch(new ImageFetchRequest { NodeId = _nodeId ?? "", ImageId = imageId }, cancellationToken: ct);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long total = 0, received = 0;
            var lastPercent = -1;
            await using (var file = new FileStream(part, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, FileOptions.Asynchronous))
            {
                await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
                {
                    if (chunk.TotalBytes > 0) total = chunk.TotalBytes;
                    var data = chunk.Data.Memory;
                    hash.AppendData(data.Span);
                    await file.WriteAsync(data, ct);
                    received += data.Length;
                    var percent = total > 0 ? (int)(received * 100 / total) : 0;
                    if (percent / 10 != lastPercent / 10)
                    {
                        lastPercent = percent;
                        progress?.Report($"fetching image {name}: {percent}% of {total / (1024 * 1024)} MiB");
                    }
                }
                await file.FlushAsync(ct);
            }
            var actual = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (!string.Equals(actual, sha256, StringComparison.OrdinalIgnoreCase))
            {
                File.Delete(part);
                throw new InvalidDataException($"image '{name}' arrived corrupted (sha256 {actual}, expected {sha256})");
            }
            File.Move(part, path, overwrite: true);
            return path;
        }
        finally
        {
            gate.Release();
        }
    }

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
