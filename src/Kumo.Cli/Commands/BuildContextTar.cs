using System.Formats.Tar;
using System.Text;
using System.Text.RegularExpressions;

namespace Kumo.Cli.Commands;

/// <summary>
/// Packs a build directory as a tar, leaving out what .dockerignore names. Patterns as Docker reads them, simplified:
/// one per line, '#' comments, '*' and '?' within a path segment, '**' across segments, a leading '!' takes a path
/// back in, and the last matching line wins; a pattern that matches a directory leaves out everything below it.
/// Symbolic links are packed as links, never followed.
/// </summary>
internal static class BuildContextTar
{
    public static async Task WriteAsync(string dir, string tarPath, CancellationToken ct)
    {
        var rules = ReadIgnore(Path.Combine(dir, ".dockerignore"));
        await using var output = File.Create(tarPath);
        await using var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: false);
        await AddAsync(writer, dir, "", rules, ct);
    }

    private static async Task AddAsync(TarWriter writer, string root, string relative, IReadOnlyList<(Regex Pattern, bool Include)> rules, CancellationToken ct)
    {
        var full = relative.Length == 0 ? root : Path.Combine(root, relative);
        foreach (var entry in Directory.EnumerateFileSystemEntries(full).Order(StringComparer.Ordinal))
        {
            var name = relative.Length == 0 ? Path.GetFileName(entry) : $"{relative}/{Path.GetFileName(entry)}";
            var info = new FileInfo(entry);
            var isDir = info.Attributes.HasFlag(FileAttributes.Directory) && info.LinkTarget is null;
            if (!Ignored(name, rules)) await writer.WriteEntryAsync(entry, name, ct);
            // Below an ignored directory a '!' line may still take something back in.
            if (isDir) await AddAsync(writer, root, name, rules, ct);
        }
    }

    internal static bool Ignored(string path, IReadOnlyList<(Regex Pattern, bool Include)> rules)
    {
        var ignored = false;
        foreach (var (pattern, include) in rules)
        {
            // A pattern matches the path itself or any directory above it.
            var at = path;
            var matched = false;
            while (true)
            {
                if (pattern.IsMatch(at)) { matched = true; break; }
                var slash = at.LastIndexOf('/');
                if (slash < 0) break;
                at = at[..slash];
            }
            if (matched) ignored = !include;
        }
        return ignored;
    }

    internal static List<(Regex Pattern, bool Include)> ReadIgnore(string file)
    {
        var rules = new List<(Regex, bool)>();
        if (!File.Exists(file)) return rules;
        foreach (var raw in File.ReadAllLines(file))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var include = line.StartsWith('!');
            if (include) line = line[1..].Trim();
            line = line.Trim('/');
            if (line.StartsWith("./", StringComparison.Ordinal)) line = line[2..];
            if (line.Length == 0) continue;
            rules.Add((new Regex("^" + Glob(line) + "\\z", RegexOptions.CultureInvariant), include));
        }
        return rules;
    }

    private static string Glob(string pattern)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == '*' && i + 1 < pattern.Length && pattern[i + 1] == '*')
            {
                // '**/' matches any number of directories, including none.
                if (i + 2 < pattern.Length && pattern[i + 2] == '/') { sb.Append("(.*/)?"); i += 2; }
                else { sb.Append(".*"); i++; }
            }
            else if (c == '*') sb.Append("[^/]*");
            else if (c == '?') sb.Append("[^/]");
            else sb.Append(Regex.Escape(c.ToString()));
        }
        return sb.ToString();
    }
}
