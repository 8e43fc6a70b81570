using System.Text;

namespace Kumo.Server.Images;

/// <summary>What a file is, judged from its bytes alone (never its name): a disk format qemu-img reads, or an archive.</summary>
public enum ContentKind
{
    Unknown,
    Qcow2,
    Raw,
    Vmdk,

    /// <summary>VHD; qemu calls the format "vpc".</summary>
    Vhd,
    Vhdx,
    Gzip,
    Tar,
}

public static class DiskFormat
{
    private static readonly byte[] Qcow2Magic = [(byte)'Q', (byte)'F', (byte)'I', 0xfb];

    /// <summary>qemu-img's -f name for a disk kind.</summary>
    public static string QemuName(ContentKind kind) => kind switch
    {
        ContentKind.Qcow2 => "qcow2",
        ContentKind.Raw => "raw",
        ContentKind.Vmdk => "vmdk",
        ContentKind.Vhd => "vpc",
        ContentKind.Vhdx => "vhdx",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a disk format"),
    };

    public static bool IsDisk(ContentKind kind) => kind is ContentKind.Qcow2 or ContentKind.Raw or ContentKind.Vmdk or ContentKind.Vhd or ContentKind.Vhdx;

    /// <summary>
    /// Magic numbers: qcow2 "QFI\xfb"; VMDK sparse extent "KDMV" (a text descriptor naming other files is refused, as
    /// it could point anywhere); VHDX "vhdxfile"; VHD "conectix" in the 512-byte footer (and at 0 for dynamic disks);
    /// gzip 1f 8b; tar "ustar" at 257. Raw is only accepted when it looks like a disk: an MBR boot signature or a GPT
    /// header, and a whole number of sectors, so an arbitrary file is never taken for a raw disk.
    /// </summary>
    public static ContentKind Detect(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        var length = f.Length;
        var head = new byte[1024];
        var n = ReadAt(f, 0, head);
        var h = head.AsSpan(0, n);
        if (h.StartsWith(Qcow2Magic)) return ContentKind.Qcow2;
        if (h.StartsWith("KDMV"u8)) return ContentKind.Vmdk;
        if (h.StartsWith("vhdxfile"u8)) return ContentKind.Vhdx;
        if (h.StartsWith("conectix"u8)) return ContentKind.Vhd;
        if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b) return ContentKind.Gzip;
        if (n >= 262 && h.Slice(257, 5).SequenceEqual("ustar"u8)) return ContentKind.Tar;
        if (length >= 512)
        {
            var footer = new byte[512];
            ReadAt(f, length - 512, footer);
            if (footer.AsSpan().StartsWith("conectix"u8)) return ContentKind.Vhd;
        }
        if (length >= 512 && length % 512 == 0 && n >= 512)
        {
            var mbr = h[510] == 0x55 && h[511] == 0xaa;
            var gpt = n >= 520 && h.Slice(512, 8).SequenceEqual("EFI PART"u8);
            if (mbr || gpt) return ContentKind.Raw;
        }
        return ContentKind.Unknown;
    }

    /// <summary>A short description of an unknown file's first bytes, for the refusal message.</summary>
    public static string Describe(string path)
    {
        using var f = File.OpenRead(path);
        var head = new byte[16];
        var n = ReadAt(f, 0, head);
        if (n == 0) return "the file is empty";
        if (head.AsSpan(0, n).StartsWith("# Disk DescriptorFile"u8))
            return "a VMDK text descriptor that refers to other files (upload a monolithic VMDK, an OVA or a box instead)";
        var printable = head.Take(n).All(b => b is >= 0x20 and < 0x7f or (byte)'\n' or (byte)'\r' or (byte)'\t');
        return printable
            ? $"it starts with the text \"{Encoding.ASCII.GetString(head, 0, n).ReplaceLineEndings(" ")}\""
            : $"it starts with the bytes {Convert.ToHexString(head, 0, Math.Min(n, 8)).ToLowerInvariant()}";
    }

    private static int ReadAt(FileStream f, long offset, byte[] buffer)
    {
        f.Position = offset;
        var total = 0;
        while (total < buffer.Length)
        {
            var r = f.Read(buffer, total, buffer.Length - total);
            if (r == 0) break;
            total += r;
        }
        return total;
    }
}
