namespace Kumo.Server.Images;

public sealed record ImageOptions
{
    /// <summary>
    /// The largest upload, and the most an archive may expand to: anything past it is refused (413) as it streams in,
    /// so a decompression bomb stops here.
    /// </summary>
    public long MaxImageBytes { get; init; } = 64L * 1024 * 1024 * 1024;

    /// <summary>The largest disk (as the guest sees it) an image may declare; a qcow2 can claim petabytes in a few bytes.</summary>
    public long MaxVirtualBytes { get; init; } = 256L * 1024 * 1024 * 1024;

    /// <summary>The largest build context (the tar kumo ct build uploads); past it the upload is refused (413) as it streams in.</summary>
    public long MaxBuildContextBytes { get; init; } = 256L * 1024 * 1024;

    /// <summary>Where built base images are cached, keyed by the build script's hash (default STATE/images/.base-cache).</summary>
    public string? BuildCacheDir { get; init; }

    /// <summary>The Debian mirror base images are built from (default: the build script's, http://deb.debian.org/debian).</summary>
    public string? DebianMirror { get; init; }
}
