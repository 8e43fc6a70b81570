namespace Kumo.Agent;

/// <summary>Small state files that a crash must never leave half-written.</summary>
internal static class AtomicFile
{
    /// <summary>Writes a temporary file next to <paramref name="path"/> and renames it over the old one.</summary>
    public static async Task WriteAsync(string path, string content, CancellationToken ct)
    {
        var tmp = path + ".tmp";
        await File.WriteAllTextAsync(tmp, content, ct);
        File.Move(tmp, path, overwrite: true);
    }
}
