using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.Testing;

/// <summary>A CA made by the test and server certificates it issues, for HTTPS fakes of kumod.</summary>
public sealed class TestCertificates : IDisposable
{
    private readonly List<X509Certificate2> _issued = [];

    public TestCertificates(string name = "Test CA")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.DigitalSignature, true));
        Ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddYears(1));
    }

    /// <summary>The CA, with its key.</summary>
    public X509Certificate2 Ca { get; }

    public string Fingerprint => CertificateFingerprint.Of(Ca);

    public string CaPem => Ca.ExportCertificatePem();

    /// <summary>A server certificate for the given DNS names and IP addresses (default: 127.0.0.1 and localhost).</summary>
    public X509Certificate2 Server(params string[] names)
    {
        var san = new SubjectAlternativeNameBuilder();
        foreach (var name in names.Length == 0 ? ["127.0.0.1", "localhost"] : names)
        {
            if (IPAddress.TryParse(name, out var ip))
                san.AddIpAddress(ip);
            else
                san.AddDnsName(name);
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=kumod", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(CaTrust.ServerAuth)], false));
        request.CertificateExtensions.Add(san.Build());
        using var issued = request.Create(Ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(30), RandomNumberGenerator.GetBytes(12));
        // Kestrel wants a key it can use on every platform: round-trip through PKCS#12.
        var withKey = X509CertificateLoader.LoadPkcs12(issued.CopyWithPrivateKey(key).Export(X509ContentType.Pkcs12), null);
        _issued.Add(withKey);
        return withKey;
    }

    public void Dispose()
    {
        foreach (var c in _issued)
            c.Dispose();
        Ca.Dispose();
    }
}
