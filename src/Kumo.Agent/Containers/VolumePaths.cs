namespace Kumo.Agent.Containers;

/// <summary>
/// Turns a volume source (relative to the owner's storage dir) into the real path to bind-mount, refusing anything
/// that ends up outside that dir. kumod already refused absolute paths and '..'; only the node can see symlinks, so
/// each existing component is resolved here and the real path (without links) is what gets mounted.
/// </summary>
public static class VolumePaths
{
    public static async Task<string> ResolveAsync(string dataRoot, string owner, string source, CancellationToken ct)
    {
        if (owner.Length == 0 || owner.Contains('/', StringComparison.Ordinal) || owner is "." or "..")
            throw new InvalidOperationException("volumes need an owner with a storage dir");
        var parts = source.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Any(p => p is ".." or "."))
            throw new InvalidOperationException($"volume '{source}' refused: '..' leaves the storage dir");
        var userDir = Path.Combine(dataRoot, owner);
        Directory.CreateDirectory(userDir);
        var root = await RealPathAsync(userDir, ct);

        // The longest prefix that exists (a dangling link counts: it must not be created through).
        var existing = 0;
        var probe = userDir;
        foreach (var p in parts)
        {
            var next = Path.Combine(probe, p);
            if (!Path.Exists(next) && new FileInfo(next).LinkTarget is null) break;
            probe = next;
            existing++;
        }
        var real = await RealPathAsync(probe, ct);
        if (real != root && !real.StartsWith(root + "/", StringComparison.Ordinal))
            throw new InvalidOperationException($"volume '{source}' refused: it resolves to {real}, outside {owner}'s storage dir");
        if (existing < parts.Length && !Directory.Exists(real))
            throw new InvalidOperationException($"volume '{source}' refused: {real} is not a directory");
        foreach (var p in parts.Skip(existing))
        {
            // Each new component is made inside a directory already checked, so it cannot be a link made by someone else.
            real = Path.Combine(real, p);
            Directory.CreateDirectory(real);
        }
        return real;
    }

    private static async Task<string> RealPathAsync(string path, CancellationToken ct)
    {
        var r = await ProcessRunner.RunAsync("realpath", ["-e", "--", path], ct);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"volume path {path} cannot be resolved: {r.Stderr.Trim()}");
        return r.Stdout.TrimEnd('\n');
    }
}
