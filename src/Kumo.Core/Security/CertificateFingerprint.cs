using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kumo.Core.Security;

/// <summary>
/// SHA-256 fingerprints of certificates: what kumod logs, the CLI shows on first contact, and
/// <c>--ca-fingerprint</c> / <c>--accept-fingerprint</c> take.
/// </summary>
public static class CertificateFingerprint
{
    /// <summary>Lowercase hex of SHA-256 over the DER encoding, 64 characters (what <c>sha256sum</c> prints for the DER file).</summary>
    public static string Of(X509Certificate2 certificate) => Convert.ToHexStringLower(SHA256.HashData(certificate.RawData));

    /// <summary>
    /// The canonical form of a fingerprint typed by a person: accepts upper case, colons (as <c>openssl x509 -fingerprint</c>
    /// prints them) and a <c>sha256:</c> prefix. Null when it is not 32 bytes of hex.
    /// </summary>
    public static string? Normalize(string? text)
    {
        if (text is null)
            return null;
        var t = text.Trim();
        var eq = t.IndexOf('=', StringComparison.Ordinal);
        if (eq >= 0 && t[..eq].Contains("fingerprint", StringComparison.OrdinalIgnoreCase))
            t = t[(eq + 1)..];
        if (t.StartsWith("sha256:", StringComparison.OrdinalIgnoreCase))
            t = t["sha256:".Length..];
        t = t.Replace(":", "", StringComparison.Ordinal).Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant();
        return t.Length == 64 && t.All(char.IsAsciiHexDigit) ? t : null;
    }
}
