using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.Server.Security;

/// <summary>
/// kumod's own certificate authority: an ECDSA P-256 key and a self-signed certificate valid for ten years. It signs
/// kumod's server certificate and every node's client certificate.
/// </summary>
public sealed class CertificateAuthority : IDisposable
{
    public static readonly TimeSpan Lifetime = TimeSpan.FromDays(3650);

    // Issued certificates start a little in the past, so a peer whose clock runs slightly behind accepts them.
    private static readonly TimeSpan Backdate = TimeSpan.FromMinutes(5);

    private readonly ECDsa _key;

    private CertificateAuthority(X509Certificate2 certificate, ECDsa key)
    {
        Certificate = certificate;
        _key = key;
    }

    /// <summary>The CA certificate, public part only.</summary>
    public X509Certificate2 Certificate { get; }

    public string Fingerprint => CertificateFingerprint.Of(Certificate);

    public static CertificateAuthority Create(string commonName, TimeProvider time)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={commonName}, O=Kumo"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = time.GetUtcNow();
        using var selfSigned = request.CreateSelfSigned(now - Backdate, now + Lifetime);
        return new CertificateAuthority(X509CertificateLoader.LoadCertificate(selfSigned.RawData), key);
    }

    /// <summary>Loads a CA written by <see cref="Save"/>; throws when the key does not belong to the certificate.</summary>
    public static CertificateAuthority Load(string certificatePath, string keyPath)
    {
        var certificate = CaTrust.LoadPem(certificatePath);
        var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(keyPath));
        using var publicKey = certificate.GetECDsaPublicKey();
        if (publicKey is null || !publicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
            throw new InvalidDataException($"{keyPath} is not the key of the CA certificate {certificatePath}");
        return new CertificateAuthority(certificate, key);
    }

    public void Save(string certificatePath, string keyPath)
    {
        PemFiles.Write(keyPath, _key.ExportPkcs8PrivateKeyPem(), PemFiles.Private);
        PemFiles.Write(certificatePath, Certificate.ExportCertificatePem(), PemFiles.Public);
    }

    /// <summary>A TLS server certificate for the given names, with a fresh key.</summary>
    public X509Certificate2 IssueServer(IEnumerable<string> dnsNames, IEnumerable<IPAddress> addresses, TimeProvider time)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var names = new SubjectAlternativeNameBuilder();
        foreach (var dns in dnsNames.Distinct(StringComparer.OrdinalIgnoreCase))
            names.AddDnsName(dns);
        foreach (var address in addresses.Distinct())
            names.AddIpAddress(address);
        using var issued = Issue(new X500DistinguishedName("CN=kumod, O=Kumo"), new PublicKey(key), CaTrust.ServerAuth, names.Build(), time);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>A client certificate for a node: the subject's CN is the node name, the key is the node's own.</summary>
    public X509Certificate2 IssueNode(string nodeName, PublicKey key, TimeProvider time) =>
        Issue(new X500DistinguishedName($"CN={nodeName}, O=Kumo nodes"), key, CaTrust.ClientAuth, null, time);

    private X509Certificate2 Issue(X500DistinguishedName subject, PublicKey key, string usage, X509Extension? names, TimeProvider time)
    {
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        if (names is not null)
            request.CertificateExtensions.Add(names);
        var serial = RandomNumberGenerator.GetBytes(16);
        // Positive and without a leading zero byte, so every encoder prints the same serial.
        serial[0] = (byte)((serial[0] & 0x7F) | 0x01);
        var now = time.GetUtcNow();
        var caExpiry = new DateTimeOffset(Certificate.NotAfter.ToUniversalTime());
        var notAfter = now + Lifetime < caExpiry ? now + Lifetime : caExpiry;
        return request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key), now - Backdate, notAfter, serial);
    }

    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
    }
}
