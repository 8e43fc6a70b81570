using System.Globalization;
using System.Text.RegularExpressions;

namespace Kumo.Core;

/// <summary>
/// Container image references that name a registry: <c>HOST[:PORT]/PATH[:TAG][@sha256:DIGEST]</c>. The host part is
/// what tells them from Kumo's own image names (which are RFC 1123 labels): it has a dot or a port, as in
/// <c>registry.example.org/team/app:1.2</c> or <c>127.0.0.1:5000/app</c>. Only fully qualified references are
/// accepted, so the engine never guesses a registry from a short name.
/// </summary>
public static partial class RegistryReferences
{
    public const int MaxLength = 255;

    /// <summary>Whether <paramref name="image"/> is meant as a registry reference (it has a '/'); it may still be invalid.</summary>
    public static bool IsReference(string? image) => image is not null && image.Contains('/', StringComparison.Ordinal);

    /// <summary>Null when <paramref name="image"/> is a valid registry reference, otherwise what is wrong with it.</summary>
    public static string? Validate(string image)
    {
        if (image.Length > MaxLength) return $"image reference is {image.Length} characters long; the limit is {MaxLength}";
        var slash = image.IndexOf('/', StringComparison.Ordinal);
        var host = image[..slash];
        // "localhost/NAME" is how the node's engine names its own images (built ones of every project among them).
        if (host == "localhost")
            return $"image '{image}' names the node's own image store; use the Kumo image name (see: kumo image list --type container)";
        if (!host.Contains('.', StringComparison.Ordinal) && !host.Contains(':', StringComparison.Ordinal))
            return $"image '{image}' has no registry host: give HOST[:PORT]/PATH[:TAG], e.g. registry.example.org/team/app:1.0 (a host has a dot or a port)";
        if (HostOf(image) is null)
            return $"image '{image}': '{host}' is not a registry host (a DNS name or IPv4 address, optionally :PORT)";
        if (!RestRegex().IsMatch(image[(slash + 1)..]))
            return $"image '{image}' is not a valid reference: the path takes lowercase a-z, 0-9 and '.', '_', '-' between '/', then an optional :TAG and @sha256:DIGEST";
        return null;
    }

    /// <summary>The registry of a valid reference, HOST or HOST:PORT; null when that part is not a host.</summary>
    public static string? HostOf(string image)
    {
        var slash = image.IndexOf('/', StringComparison.Ordinal);
        return slash > 0 && ValidRegistry(image[..slash]) ? image[..slash] : null;
    }

    /// <summary>HOST or HOST:PORT, as an admin names a registry (kumod --insecure-registry).</summary>
    public static bool ValidRegistry(string registry)
    {
        var colon = registry.LastIndexOf(':');
        var host = colon < 0 ? registry : registry[..colon];
        if (colon >= 0 && !(int.TryParse(registry[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535))
            return false;
        return host.Length is > 0 and <= 253 && HostRegex().IsMatch(host);
    }

    [GeneratedRegex("^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")]
    private static partial Regex HostRegex();

    // The distribution spec's grammar: path components, an optional tag, an optional digest.
    [GeneratedRegex("^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")]
    private static partial Regex RestRegex();
}
