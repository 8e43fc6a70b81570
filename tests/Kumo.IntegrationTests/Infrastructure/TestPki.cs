using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>A throw-away CA made by the test itself: the "other CA" of an impostor, or an operator's own PKI for --tls-cert.</summary>
public sealed class TestPki : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public TestPki(string name = "Test CA")
    {
        var request = new CertificateRequest($"CN={name}", _key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.DigitalSignature, true));
        Ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddYears(1));
    }

    public X509Certificate2 Ca { get; }

    public string Fingerprint => CertificateFingerprint.Of(Ca);

    /// <summary>A client certificate with a key, as a node certificate would look if this CA were kumod's.</summary>
    public X509Certificate2 Client(string nodeName) => Issue($"CN={nodeName}", CaTrust.ClientAuth, null);

    /// <summary>A server certificate for 127.0.0.1 and localhost.</summary>
    public X509Certificate2 Server()
    {
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        return Issue("CN=kumod", CaTrust.ServerAuth, names.Build());
    }

    /// <summary>Writes the CA, and a server certificate with its key, as PEM files for kumod --tls-ca/--tls-cert/--tls-key.</summary>
    public (string Cert, string Key, string Ca) WriteServerFiles(string directory)
    {
        Directory.CreateDirectory(directory);
        using var server = Server();
        var files = (Path.Combine(directory, "server.pem"), Path.Combine(directory, "server.key"), Path.Combine(directory, "ca.pem"));
        File.WriteAllText(files.Item1, server.ExportCertificatePem());
        File.WriteAllText(files.Item2, server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(files.Item3, Ca.ExportCertificatePem());
        return files;
    }

    private X509Certificate2 Issue(string subject, string usage, X509Extension? names)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        if (names is not null) request.CertificateExtensions.Add(names);
        using var issued = request.Create(Ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(30), RandomNumberGenerator.GetBytes(12));
        return issued.CopyWithPrivateKey(key);
    }

    public void Dispose()
    {
        Ca.Dispose();
        _key.Dispose();
    }
}
