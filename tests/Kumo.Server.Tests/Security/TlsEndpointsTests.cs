using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Core.Security;
using Kumo.Server.Api;
using Kumo.Server.Security;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Security;

public sealed class TlsEndpointsTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task GetCa_ReturnsThePemOfTheCaInStatePki()
    {
        var response = await _server.Client.GetAsync("/api/v1/ca");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-pem-file", response.Content.Headers.ContentType?.MediaType);
        using var served = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(await response.Content.ReadAsStringAsync());
        Assert.Equal(CertificateFingerprint.Of(_server.Ca), CertificateFingerprint.Of(served));
    }

    [Fact]
    public async Task PostNodeToken_Returns201WithATokenItsExpiryAndTheCaFingerprint()
    {
        var before = DateTimeOffset.UtcNow;

        var response = await _server.Client.PostAsJsonAsync("/api/v1/nodes/tokens", new NodeTokensPost { Ttl = "2h" }, Problems.Json);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var token = (await response.Content.ReadFromJsonAsync<NodeToken>(Problems.Json))!;
        Assert.Equal(CertificateFingerprint.Of(_server.Ca), token.CaFingerprint);
        Assert.InRange(token.ExpiresAt, before.AddHours(2), DateTimeOffset.UtcNow.AddHours(2));
        Assert.False(string.IsNullOrWhiteSpace(token.Token));
    }

    [Fact]
    public async Task PostNodeToken_WithoutABody_LastsAnHour()
    {
        var response = await _server.Client.PostAsync("/api/v1/nodes/tokens", null);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var token = (await response.Content.ReadFromJsonAsync<NodeToken>(Problems.Json))!;
        Assert.InRange(token.ExpiresAt - DateTimeOffset.UtcNow, TimeSpan.FromMinutes(59), TimeSpan.FromMinutes(60));
    }

    [Theory]
    [InlineData("8d")]
    [InlineData("1x")]
    [InlineData("-1h")]
    [InlineData("0m")]
    [InlineData("")]
    public async Task PostNodeToken_WithABadTtl_Returns400Validation(string ttl)
    {
        var response = await _server.Client.PostAsJsonAsync("/api/v1/nodes/tokens", new NodeTokensPost { Ttl = ttl }, Problems.Json);

        var problem = await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
        Assert.True(problem.Errors!.ContainsKey("ttl"));
    }

    [Fact]
    public async Task PlainHttp_IsServedOnlyWithInsecureHttp()
    {
        await using var insecure = await TestServer.StartAsync(new TlsOptions { InsecureHttp = true });
        using var plain = new HttpClient();

        Assert.Equal(Uri.UriSchemeHttp, insecure.Addresses.Api.Scheme);
        Assert.Equal(Uri.UriSchemeHttps, insecure.Addresses.Agent.Scheme);
        Assert.Equal(HttpStatusCode.OK, (await plain.GetAsync(new Uri(insecure.Addresses.Api, "/api/v1/ca"))).StatusCode);
        await Assert.ThrowsAsync<HttpRequestException>(() => plain.GetAsync(new Uri(new UriBuilder(_server.Addresses.Api) { Scheme = "http" }.Uri, "/api/v1/ca")));
    }
}
