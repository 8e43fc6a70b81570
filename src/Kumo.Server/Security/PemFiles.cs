namespace Kumo.Server.Security;

/// <summary>Writes certificates (world-readable) and keys (owner-only, 0600) atomically: a crash never leaves half a key.</summary>
internal static class PemFiles
{
    public const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    public const UnixFileMode Public = Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    public static void Write(string path, string content, UnixFileMode mode) => Kumo.Core.Files.DurableFile.Write(path, content, mode);
}
