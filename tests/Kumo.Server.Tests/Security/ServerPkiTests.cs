using System.Net;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;
using Kumo.Server.Security;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Security;

public sealed class ServerPkiTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private ServerPki Load(TlsOptions? tls = null, params IPAddress[] listen) =>
        ServerPki.LoadOrCreate(_dir.Path, tls ?? new TlsOptions(), listen.Length == 0 ? [IPAddress.Loopback] : listen, TimeProvider.System);

    private string Pki(string file) => Path.Combine(_dir.Path, "pki", file);

    [Fact]
    public void FirstStart_MakesAP256CaForTenYears_AndAServerCertificateItIssued()
    {
        using var pki = Load();

        using var key = pki.Ca.GetECDsaPublicKey();
        Assert.Equal(256, key!.KeySize);
        Assert.InRange((pki.Ca.NotAfter - pki.Ca.NotBefore).TotalDays, 3650, 3651);
        Assert.True(CaTrust.ChainsTo(pki.ServerCertificate, pki.Ca, CaTrust.ServerAuth));
        Assert.False(CaTrust.ChainsTo(pki.ServerCertificate, pki.Ca, CaTrust.ClientAuth));
        Assert.Equal(2, pki.Changes.Count);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Pki("ca.key")));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Pki("server.key")));
        }
    }

    [Fact]
    public void NextStart_KeepsBothCertificates()
    {
        string ca, server;
        using (var first = Load())
        {
            ca = first.CaFingerprint;
            server = CertificateFingerprint.Of(first.ServerCertificate);
        }

        using var second = Load();

        Assert.Equal(ca, second.CaFingerprint);
        Assert.Equal(server, CertificateFingerprint.Of(second.ServerCertificate));
        Assert.Empty(second.Changes);
    }

    [Fact]
    public void NewSanOrListenAddress_ReplacesOnlyTheServerCertificate()
    {
        string ca;
        using (var first = Load())
            ca = first.CaFingerprint;

        using var second = Load(new TlsOptions { ExtraNames = ["kumo.example.org", "10.1.2.3"] }, IPAddress.Parse("192.0.2.7"));

        Assert.Equal(ca, second.CaFingerprint);
        var names = CaTrust.Names(second.ServerCertificate).ToList();
        Assert.Contains("kumo.example.org", names);
        Assert.Contains("10.1.2.3", names);
        Assert.Contains("192.0.2.7", names);
        Assert.Contains("localhost", names);
        Assert.Contains("::1", names);
        Assert.Contains(second.Changes, c => c.Contains("lacks", StringComparison.Ordinal));
    }

    [Fact]
    public void ListeningOnEveryAddress_AddsNoWildcardName()
    {
        using var pki = Load(listen: IPAddress.Any);

        Assert.DoesNotContain("0.0.0.0", CaTrust.Names(pki.ServerCertificate));
    }

    [Fact]
    public void NodeCertificates_AreForClientsOnly_AndNameTheNode()
    {
        using var pki = Load();
        using var key = System.Security.Cryptography.ECDsa.Create();

        using var node = pki.Authority.IssueNode("node-7", new PublicKey(key), TimeProvider.System);

        Assert.Equal("node-7", node.GetNameInfo(X509NameType.SimpleName, false));
        Assert.True(CaTrust.ChainsTo(node, pki.Authority.Certificate, CaTrust.ClientAuth));
        Assert.False(CaTrust.ChainsTo(node, pki.Authority.Certificate, CaTrust.ServerAuth));
        Assert.True(node.NotAfter <= pki.Authority.Certificate.NotAfter);
    }

    [Fact]
    public void SuppliedFiles_MustComeTogether()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Load(new TlsOptions { CertificateFile = "x.pem" }));

        Assert.Contains("--tls-cert, --tls-key and --tls-ca go together", e.Message);
    }

    [Fact]
    public void SuppliedCertificate_NotIssuedByTheSuppliedCa_IsRefused()
    {
        using var own = Load();
        File.WriteAllText(_dir.File("cert.pem"), own.ServerCertificate.ExportCertificatePem());
        File.WriteAllText(_dir.File("key.pem"), own.ServerCertificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        using var stranger = CertificateAuthority.Create("Stranger", TimeProvider.System);
        File.WriteAllText(_dir.File("ca.pem"), stranger.Certificate.ExportCertificatePem());

        var e = Assert.Throws<InvalidOperationException>(() => Load(new TlsOptions
        {
            CertificateFile = _dir.File("cert.pem"),
            KeyFile = _dir.File("key.pem"),
            CaFile = _dir.File("ca.pem"),
        }));

        Assert.Contains("is not a valid TLS server certificate issued by", e.Message);
    }

    [Fact]
    public void CaKeyThatDoesNotMatchItsCertificate_IsRefused()
    {
        using (Load())
        {
        }
        using var other = CertificateAuthority.Create("Other", TimeProvider.System);
        other.Save(_dir.File("other.crt"), Pki("ca.key"));

        Assert.Throws<InvalidDataException>(() => Load());
    }
}
