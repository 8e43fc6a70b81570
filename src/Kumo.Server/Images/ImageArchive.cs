using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using System.Xml.Linq;

namespace Kumo.Server.Images;

/// <summary>The disk taken out of a Vagrant box or an OVA, and what kind of archive it came from.</summary>
public sealed record ArchiveDisk(string Path, string ArchiveKind, string Member);

/// <summary>
/// Unpacks a Vagrant .box (tar or tar.gz with metadata.json and box.img / box-disk*.vmdk) or an OVA (tar with an .ovf
/// and its .vmdk) without trusting it: every member is checked before anything is written, links and devices are
/// refused, member names never become file system paths (disks are written under names of our own), and the whole
/// expanded stream is capped, so a decompression bomb stops at the cap instead of filling the disk.
/// </summary>
public static class ImageArchive
{
    private const long SmallMemberLimit = 1024 * 1024;
    private const int MaxMembers = 1000;
    private static readonly string[] DiskSuffixes = [".img", ".vmdk", ".qcow2", ".vhd", ".vhdx", ".raw"];

    public static async Task<ArchiveDisk> ExtractAsync(string path, bool gzip, string workDir, long maxExpandedBytes, CancellationToken ct)
    {
        await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous);
        Stream input = gzip ? new GZipStream(file, CompressionMode.Decompress) : file;
        await using var capped = new CappedReadStream(input, maxExpandedBytes);
        var small = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var disks = new Dictionary<string, string>(StringComparer.Ordinal);
        var members = 0;
        try
        {
            await using var reader = new TarReader(capped, leaveOpen: true);
            while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                if (++members > MaxMembers) throw ImageProblems.Rejected($"the archive has more than {MaxMembers} members");
                var name = CheckMember(entry);
                if (name is null) continue;
                if (entry.DataStream is null) continue;
                var lower = name.ToLowerInvariant();
                if (lower is "metadata.json" || lower.EndsWith(".ovf", StringComparison.Ordinal))
                {
                    if (entry.Length > SmallMemberLimit) throw ImageProblems.Rejected($"archive member '{name}' is too large for a descriptor ({entry.Length} bytes)");
                    using var ms = new MemoryStream();
                    await entry.DataStream.CopyToAsync(ms, ct);
                    small[name] = ms.ToArray();
                }
                else if (DiskSuffixes.Any(s => lower.EndsWith(s, StringComparison.Ordinal)))
                {
                    // Our own file name: the member's name is only a key, never a path.
                    var target = System.IO.Path.Combine(workDir, $"member-{disks.Count}.disk");
                    await using (var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
                        await entry.DataStream.CopyToAsync(output, ct);
                    if (!disks.TryAdd(name, target)) throw ImageProblems.Rejected($"the archive holds '{name}' twice");
                }
            }
        }
        catch (CappedReadStream.CapExceededException)
        {
            throw ImageProblems.TooLarge($"the archive expands to more than {Core.ByteSize.Human(maxExpandedBytes)} (the configured maximum image size); refused as a possible decompression bomb");
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException or JsonException)
        {
            throw ImageProblems.Rejected($"the archive is corrupt or truncated: {e.Message}");
        }
        if (members == 0) throw ImageProblems.Rejected("the archive is empty");

        var (kind, chosen) = Choose(small, disks);
        foreach (var (member, extracted) in disks)
            if (member != chosen) File.Delete(extracted);
        return new ArchiveDisk(disks[chosen], kind, chosen);
    }

    /// <summary>The member's normalized name, or null for a directory; refuses anything that is not a plain file or directory.</summary>
    private static string? CheckMember(TarEntry entry)
    {
        var raw = entry.Name;
        var what = entry.EntryType switch
        {
            TarEntryType.SymbolicLink => "a symbolic link",
            TarEntryType.HardLink => "a hard link",
            TarEntryType.CharacterDevice or TarEntryType.BlockDevice => "a device node",
            TarEntryType.Fifo => "a FIFO",
            TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile or TarEntryType.Directory => null,
            _ => $"of unsupported type {entry.EntryType}",
        };
        if (what is not null) throw ImageProblems.Rejected($"archive member '{raw}' is {what}; only plain files are accepted");
        if (!string.IsNullOrEmpty(entry.LinkName)) throw ImageProblems.Rejected($"archive member '{raw}' links to '{entry.LinkName}'");
        if (raw.Length == 0 || raw.Contains('\0') || raw.Contains('\\'))
            throw ImageProblems.Rejected($"archive member '{raw}' has an invalid name");
        if (raw.StartsWith('/')) throw ImageProblems.Rejected($"archive member '{raw}' has an absolute path");
        var parts = raw.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToList();
        if (parts.Any(p => p == "..")) throw ImageProblems.Rejected($"archive member '{raw}' escapes the archive (path traversal with '..')");
        if (entry.EntryType == TarEntryType.Directory) return null;
        return parts.Count == 0 ? throw ImageProblems.Rejected($"archive member '{raw}' has an invalid name") : string.Join('/', parts);
    }

    /// <summary>A box names its provider in metadata.json; an OVA's descriptor references its disks.</summary>
    private static (string Kind, string Member) Choose(Dictionary<string, byte[]> small, Dictionary<string, string> disks)
    {
        if (small.TryGetValue("metadata.json", out var metadata))
        {
            using var doc = JsonDocument.Parse(metadata);
            var provider = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("provider", out var p) ? p.GetString() : null;
            string? member = provider switch
            {
                "libvirt" => disks.ContainsKey("box.img") ? "box.img" : disks.Keys.Order(StringComparer.Ordinal).FirstOrDefault(k => k.EndsWith(".img", StringComparison.Ordinal)),
                "virtualbox" => OvfDisk(small, disks) ?? disks.Keys.Order(StringComparer.Ordinal).FirstOrDefault(k => k.EndsWith(".vmdk", StringComparison.Ordinal)),
                _ => throw ImageProblems.Rejected($"the Vagrant box is for provider '{provider ?? "(none)"}'; only libvirt and virtualbox boxes are accepted"),
            };
            return ("box", member ?? throw ImageProblems.Rejected($"the {provider} box has no disk (box.img or box-disk*.vmdk)"));
        }
        if (small.Keys.Any(k => k.EndsWith(".ovf", StringComparison.OrdinalIgnoreCase)))
            return ("ova", OvfDisk(small, disks) ?? throw ImageProblems.Rejected("the OVA's descriptor references no disk that is in the archive"));
        throw ImageProblems.Rejected("the tar archive is neither a Vagrant box (no metadata.json) nor an OVA (no .ovf descriptor)");
    }

    private static string? OvfDisk(Dictionary<string, byte[]> small, Dictionary<string, string> disks)
    {
        var ovf = small.Keys.Order(StringComparer.Ordinal).FirstOrDefault(k => k.EndsWith(".ovf", StringComparison.OrdinalIgnoreCase));
        if (ovf is null) return null;
        XDocument doc;
        try
        {
            // No DTDs, no external entities: XDocument's default reader settings prohibit DTD processing.
            using var ms = new MemoryStream(small[ovf]);
            doc = XDocument.Load(ms);
        }
        catch (System.Xml.XmlException e)
        {
            throw ImageProblems.Rejected($"the OVF descriptor '{ovf}' is not valid XML: {e.Message}");
        }
        var dir = ovf.Contains('/') ? ovf[..(ovf.LastIndexOf('/') + 1)] : "";
        foreach (var f in doc.Descendants().Where(e => e.Name.LocalName == "File"))
        {
            var href = f.Attributes().FirstOrDefault(a => a.Name.LocalName == "href")?.Value;
            if (href is null) continue;
            if (disks.ContainsKey(dir + href)) return dir + href;
            if (disks.ContainsKey(href)) return href;
        }
        return null;
    }
}

/// <summary>Counts what is read through it and throws past a cap: the decompression-bomb fuse.</summary>
internal sealed class CappedReadStream(Stream inner, long cap) : Stream
{
    private long _read;

    public sealed class CapExceededException() : IOException("expanded size cap exceeded");

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Count(await inner.ReadAsync(buffer, cancellationToken));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int Count(int n)
    {
        _read += n;
        return _read > cap ? throw new CapExceededException() : n;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }
}
