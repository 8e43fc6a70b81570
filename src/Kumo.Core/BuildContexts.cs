using System.Formats.Tar;

namespace Kumo.Core;

/// <summary>
/// A container build's context: a tar of the directory the user builds from. kumod and the agent both check it before
/// the engine sees it, so an entry that would land outside the build directory never reaches the builder.
/// </summary>
public static class BuildContexts
{
    /// <summary>Tried in this order when the user names no file (podman's and Docker's own defaults).</summary>
    public static readonly IReadOnlyList<string> DefaultFiles = ["Containerfile", "Dockerfile"];

    /// <summary>A relative path resolved inside the context ('.', '..' and repeated slashes removed); null when it escapes.</summary>
    public static string? Normalize(string path)
    {
        if (path.Length == 0 || path.StartsWith('/') || path.Contains('\\', StringComparison.Ordinal) || path.Contains('\0', StringComparison.Ordinal))
            return null;
        var parts = new List<string>();
        foreach (var p in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (p == ".") continue;
            if (p != "..") parts.Add(p);
            else if (parts.Count == 0) return null;
            else parts.RemoveAt(parts.Count - 1);
        }
        return string.Join('/', parts);
    }

    /// <summary>
    /// Reads the whole tar and returns the build file's path inside it (the one asked for, else the first default that
    /// is present), or throws <see cref="InvalidDataException"/> with one readable sentence: an entry escaping the
    /// context (absolute, '..', a link pointing out of it), a device or FIFO, a missing build file, or a broken tar.
    /// </summary>
    public static async Task<string> CheckAsync(Stream tar, string? dockerfile, CancellationToken ct)
    {
        string? wanted = null;
        if (dockerfile is not null)
            wanted = Normalize(dockerfile) is { Length: > 0 } n ? n : throw new InvalidDataException(
                $"the build file '{dockerfile}' must be a relative path inside the build directory");
        var files = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            await using var reader = new TarReader(tar, leaveOpen: true);
            while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                var name = Normalize(entry.Name)
                    ?? throw new InvalidDataException($"the build context holds '{entry.Name}', which points outside the build directory");
                switch (entry.EntryType)
                {
                    case TarEntryType.Directory or TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                        break;
                    case TarEntryType.SymbolicLink:
                        // A link is resolved from the directory it sits in; one that leaves the context is refused.
                        var dir = name.Contains('/', StringComparison.Ordinal) ? name[..name.LastIndexOf('/')] + "/" : "";
                        if (entry.LinkName.StartsWith('/') || Normalize(dir + entry.LinkName) is null)
                            throw new InvalidDataException($"the build context's link '{name}' points outside the build directory ({entry.LinkName})");
                        break;
                    case TarEntryType.HardLink:
                        if (Normalize(entry.LinkName) is null)
                            throw new InvalidDataException($"the build context's link '{name}' points outside the build directory ({entry.LinkName})");
                        break;
                    case TarEntryType.GlobalExtendedAttributes:
                        continue;
                    default:
                        throw new InvalidDataException($"the build context holds '{name}', a {entry.EntryType}; only files, directories and links are allowed");
                }
                if (entry.EntryType is not TarEntryType.Directory) files.Add(name);
            }
        }
        catch (Exception e) when (e is FormatException or EndOfStreamException)
        {
            throw new InvalidDataException($"the build context is not a readable tar archive: {e.Message}");
        }
        if (wanted is not null)
            return files.Contains(wanted) ? wanted : throw new InvalidDataException($"the build directory has no '{wanted}'");
        return DefaultFiles.FirstOrDefault(files.Contains)
            ?? throw new InvalidDataException("the build directory has no Containerfile or Dockerfile (name another one with -f)");
    }
}
