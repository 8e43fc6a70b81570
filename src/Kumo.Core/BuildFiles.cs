using System.Formats.Tar;
using System.Text;
using System.Text.RegularExpressions;

namespace Kumo.Core;

/// <summary>
/// The images a Containerfile builds on: every <c>FROM IMAGE [AS NAME]</c> and <c>COPY --from=IMAGE</c> that names no
/// earlier stage. kumod resolves each through the caller's project (a user's own built image becomes its engine
/// reference) and refuses the rest before any node sees the build, so a build file cannot reach into the node's
/// image store for another project's image.
/// </summary>
public static partial class BuildFiles
{
    /// <summary>
    /// Rewrites each image the build file names with <paramref name="resolve"/> (null keeps the name as written).
    /// Names of earlier stages are left alone. Throws <see cref="InvalidDataException"/> for a reference it cannot
    /// follow (a variable).
    /// </summary>
    public static string RewriteImages(string text, Func<string, string?> resolve)
    {
        var stages = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var output = new StringBuilder(text.Length);
        foreach (var line in text.Split('\n'))
        {
            if (output.Length > 0) output.Append('\n');
            if (From().Match(line) is { Success: true } from)
            {
                var image = from.Groups["image"].Value;
                var replaced = stages.Contains(image) ? image : Resolve(image, resolve);
                output.Append(line, 0, from.Groups["image"].Index).Append(replaced).Append(line, from.Groups["image"].Index + image.Length,
                    line.Length - from.Groups["image"].Index - image.Length);
                if (from.Groups["stage"].Success) stages.Add(from.Groups["stage"].Value);
                continue;
            }
            if (CopyFrom().Match(line) is { Success: true } copy && !stages.Contains(copy.Groups["image"].Value)
                && !int.TryParse(copy.Groups["image"].Value, out _))
            {
                var image = copy.Groups["image"].Value;
                output.Append(line, 0, copy.Groups["image"].Index).Append(Resolve(image, resolve)).Append(line, copy.Groups["image"].Index + image.Length,
                    line.Length - copy.Groups["image"].Index - image.Length);
                continue;
            }
            if (MountFrom().IsMatch(line))
                throw new InvalidDataException("RUN --mount with from= is not supported in kumo ct build; COPY --from the stage or image instead");
            output.Append(line);
        }
        return output.ToString();
    }

    /// <summary>The text of one member of a (checked) build context tar, or null when it is not there.</summary>
    public static async Task<string?> ReadMemberAsync(string tar, string member, CancellationToken ct)
    {
        await using var file = File.OpenRead(tar);
        await using var reader = new TarReader(file);
        while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
        {
            if (BuildContexts.Normalize(entry.Name) != member || entry.DataStream is null) continue;
            using var text = new StreamReader(entry.DataStream);
            return await text.ReadToEndAsync(ct);
        }
        return null;
    }

    /// <summary>Copies <paramref name="tar"/> to <paramref name="output"/> with <paramref name="member"/>'s content replaced.</summary>
    public static async Task ReplaceMemberAsync(string tar, string member, string content, string output, CancellationToken ct)
    {
        await using var input = File.OpenRead(tar);
        await using var reader = new TarReader(input);
        await using var file = File.Create(output);
        await using (var writer = new TarWriter(file, TarEntryFormat.Pax, leaveOpen: true))
        {
            while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                if (BuildContexts.Normalize(entry.Name) == member && entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile)
                {
                    var replaced = new PaxTarEntry(TarEntryType.RegularFile, entry.Name) { Mode = entry.Mode, ModificationTime = entry.ModificationTime };
                    replaced.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content));
                    await writer.WriteEntryAsync(replaced, ct);
                    continue;
                }
                await writer.WriteEntryAsync(entry, ct);
            }
        }
    }

    private static string Resolve(string image, Func<string, string?> resolve)
    {
        if (image.Contains('$', StringComparison.Ordinal))
            throw new InvalidDataException($"'{image}': an image given by a variable cannot be checked; name the image in the build file");
        return resolve(image) ?? image;
    }

    [GeneratedRegex(@"^\s*FROM\s+(?:--\S+\s+)*(?<image>\S+)(?:\s+AS\s+(?<stage>\S+))?\s*\r?$", RegexOptions.IgnoreCase)]
    private static partial Regex From();

    [GeneratedRegex(@"^\s*COPY\s+(?:--\S+\s+)*?--from=(?<image>[^\s]+)", RegexOptions.IgnoreCase)]
    private static partial Regex CopyFrom();

    [GeneratedRegex(@"^\s*RUN\s+.*--mount=\S*from=", RegexOptions.IgnoreCase)]
    private static partial Regex MountFrom();
}
