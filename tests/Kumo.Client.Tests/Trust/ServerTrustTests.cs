using Kumo.Client.Trust;
using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Client.Tests.Trust;

public sealed class ServerTrustTests
{
    /// <summary>An HTTPS kumod whose certificate <paramref name="issuer"/> issued, handing out <paramref name="published"/> as its CA.</summary>
    private static Task<FakeKumod> StartAsync(TestCertificates issuer, TestCertificates published, params string[] names) =>
        FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/ca", () => Results.Text(published.CaPem, "application/x-pem-file"));
            app.MapGet("/api/v1/nodes", () => FakeKumod.Ok(Array.Empty<Node>()));
        }, issuer.Server(names));

    [Fact]
    public async Task FetchCa_ReturnsTheCaThatIssuedTheServersCertificate()
    {
        using var pki = new TestCertificates();
        await using var kumod = await StartAsync(pki, pki);

        using var ca = await ServerTrust.FetchCaAsync(kumod.Url);

        Assert.Equal(pki.Fingerprint, Core.Security.CertificateFingerprint.Of(ca));
    }

    [Fact]
    public async Task FetchCa_WhenTheHandedOutCaDidNotIssueTheServersCertificate_Refuses()
    {
        using var real = new TestCertificates("Real");
        using var decoy = new TestCertificates("Decoy");
        await using var kumod = await StartAsync(real, decoy);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => ServerTrust.FetchCaAsync(kumod.Url));

        Assert.Contains("did not issue its own certificate", e.Message);
    }

    [Fact]
    public async Task PinnedClient_TrustsTheServerItsCaIssued()
    {
        using var pki = new TestCertificates();
        await using var kumod = await StartAsync(pki, pki);
        using var client = new KumoClient(kumod.Url, pki.Ca);

        Assert.Empty(await client.ListNodesAsync());
    }

    [Fact]
    public async Task PinnedClient_RefusesAServerWithAnotherCa_NamingBothFingerprints()
    {
        using var pinned = new TestCertificates("Pinned");
        using var other = new TestCertificates("Other");
        await using var kumod = await StartAsync(other, other);
        using var client = new KumoClient(kumod.Url, pinned.Ca);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.ListNodesAsync());

        Assert.False(e.IsUnreachable);
        Assert.Contains("not issued by the pinned CA", e.Message);
        Assert.Contains(pinned.Fingerprint, e.Message);
        Assert.Contains($"kumo config trust --fingerprint {other.Fingerprint}", e.Message);
        // The refused server never saw the request itself.
        Assert.DoesNotContain("GET /api/v1/nodes", kumod.Requests);
    }

    [Fact]
    public async Task PinnedClient_RefusesACertificateThatDoesNotNameTheAddressDialled()
    {
        using var pki = new TestCertificates();
        await using var kumod = await StartAsync(pki, pki, "kumo.example.org");
        using var client = new KumoClient(kumod.Url, pki.Ca);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.ListNodesAsync());

        Assert.Contains("does not name the address dialled", e.Message);
        Assert.Contains("kumo.example.org", e.Message);
    }

    [Fact]
    public async Task PlainHttpClient_AgainstAnHttpsServer_SaysToUseHttps()
    {
        using var pki = new TestCertificates();
        await using var kumod = await StartAsync(pki, pki);
        using var client = new KumoClient(new UriBuilder(kumod.Url) { Scheme = "http" }.Uri);

        var e = await Assert.ThrowsAsync<KumoApiException>(() => client.ListNodesAsync());

        Assert.Contains("use https://", e.Message);
    }
}
