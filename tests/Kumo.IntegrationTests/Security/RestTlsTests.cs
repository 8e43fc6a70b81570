using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Kumo.Client.Trust;
using Kumo.Core.Security;
using Kumo.IntegrationTests.Infrastructure;
using Kumo.Protocol;

namespace Kumo.IntegrationTests.Security;

/// <summary>kumod's TLS as a client meets it: HTTPS by default, its CA handed out, plain HTTP only when asked for.</summary>
public sealed class RestTlsTests(BareKumod fixture) : IClassFixture<BareKumod>
{
    private KumoEnvironment Env => fixture.Env;

    [Fact]
    public async Task PlainHttp_OnTheRestPort_GetsNoAnswer()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };

        var e = await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync($"http://127.0.0.1:{Env.ApiPort}/api/v1/nodes"));

        Assert.NotEqual(HttpRequestError.Unknown, e.HttpRequestError);
    }

    [Fact]
    public async Task PlainHttp2_OnTheAgentPort_IsRefused()
    {
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Env.AgentPort}");

        var e = await Assert.ThrowsAsync<RpcException>(() => new AgentControl.AgentControlClient(channel).GetCaAsync(new CaRequest()).ResponseAsync);

        Assert.NotEqual(StatusCode.OK, e.StatusCode);
    }

    [Fact]
    public async Task CaEndpoint_HandsOutStatePkiCa_WithoutCredentials()
    {
        using var fetched = await ServerTrust.FetchCaAsync(new Uri(Env.Url));
        using var onDisk = CaTrust.LoadPem(Env.CaPath);
        using var anonymous = await Env.Api.Http.GetAsync("/api/v1/ca");

        Assert.Equal(CertificateFingerprint.Of(onDisk), CertificateFingerprint.Of(fetched));
        Assert.Equal(HttpStatusCode.OK, anonymous.StatusCode);
        Assert.Equal("application/x-pem-file", anonymous.Content.Headers.ContentType?.MediaType);
        Assert.Contains(CertificateFingerprint.Of(onDisk), Env.Server!.Log);
    }

    [Fact]
    public void Pki_KeysAreOwnerOnly_CertificatesReadable()
    {
        var pki = Path.Combine(Env.StateDir, "pki");
        const UnixFileMode ownerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

        Assert.Equal(ownerOnly, File.GetUnixFileMode(Path.Combine(pki, "ca.key")));
        Assert.Equal(ownerOnly, File.GetUnixFileMode(Path.Combine(pki, "server.key")));
        Assert.True(File.GetUnixFileMode(Path.Combine(pki, "ca.crt")).HasFlag(UnixFileMode.OtherRead));
        using var ca = CaTrust.LoadPem(Path.Combine(pki, "ca.crt"));
        using var key = ca.GetECDsaPublicKey();
        Assert.Equal(256, key!.KeySize);
        Assert.InRange((ca.NotAfter - ca.NotBefore).TotalDays, 3649, 3651);
        Assert.True(ca.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
    }
}

/// <summary>kumod started with TLS options of its own: extra names, plain HTTP for development, an operator's certificate.</summary>
public sealed class TlsOptionsTests
{
    [Fact]
    public async Task ServerCertificate_NamesLoopbackLocalhostTheHostAndEveryTlsSan()
    {
        await using var env = await KumoEnvironment.StartAsync(false, "--tls-san", "kumo.example.org", "--tls-san", "10.9.8.7");

        using var server = CaTrust.LoadPem(Path.Combine(env.StateDir, "pki", "server.crt"));
        using var ca = CaTrust.LoadPem(env.CaPath);
        var names = CaTrust.Names(server).ToList();

        foreach (var expected in new[] { "127.0.0.1", "::1", "localhost", Environment.MachineName.ToLowerInvariant(), "kumo.example.org", "10.9.8.7" })
            Assert.Contains(expected, names);
        Assert.True(CaTrust.ChainsTo(server, ca, CaTrust.ServerAuth));
        // Reachable by name as well as by address.
        using var byName = new ApiClient(new Uri($"https://localhost:{env.ApiPort}"), env.CaPath);
        byName.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", env.Token);
        Assert.Empty(await byName.NodesAsync());
    }

    [Fact]
    public async Task Restart_KeepsTheCa_AndANewSanRenewsOnlyTheServerCertificate()
    {
        await using var env = await KumoEnvironment.StartAsync(false);
        var ca = await File.ReadAllTextAsync(env.CaPath);
        var server = await File.ReadAllTextAsync(Path.Combine(env.StateDir, "pki", "server.crt"));

        env.Server!.Stop(TimeSpan.FromSeconds(20));
        await env.StartServerAsync();
        Assert.Equal(ca, await File.ReadAllTextAsync(env.CaPath));
        Assert.Equal(server, await File.ReadAllTextAsync(Path.Combine(env.StateDir, "pki", "server.crt")));

        env.Server!.Stop(TimeSpan.FromSeconds(20));
        await env.StartServerAsync("--tls-san", "renamed.example.org");
        Assert.Equal(ca, await File.ReadAllTextAsync(env.CaPath));
        using var renewed = CaTrust.LoadPem(Path.Combine(env.StateDir, "pki", "server.crt"));
        Assert.Contains("renamed.example.org", CaTrust.Names(renewed));
        Assert.Contains("replaced the server certificate", env.Server!.Log);
    }

    [Fact]
    public async Task InsecureHttp_ServesPlainHttp_SaysSoInTheLog_AndAgentsStillNeedTls()
    {
        await using var env = await KumoEnvironment.StartAsync(false, "--insecure-http");

        using var http = new HttpClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", env.Token);
        var nodes = await http.GetStringAsync($"http://127.0.0.1:{env.ApiPort}/api/v1/nodes");
        using var anonymous = new AgentCalls(env, null);
        var e = await Assert.ThrowsAsync<RpcException>(() => anonymous.RegisterAsync("plain1"));
        var cli = await CliProcess.RunAsync(env.Url, new Dictionary<string, string?> { ["KUMO_TOKEN"] = env.Token }, null, "node", "list");

        Assert.Equal("[]", nodes);
        Assert.Contains("--insecure-http", env.Server!.Log);
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.True(cli.ExitCode == 0, cli.Err);
        Assert.Equal("", cli.Err);
    }

    [Fact]
    public async Task SuppliedCertificate_IsServed_ItsCaPublished_AndAnAgentJoinsPinningThatCa()
    {
        using var operatorPki = new TestPki("Operator CA");
        var files = operatorPki.WriteServerFiles(Path.Combine(Path.GetTempPath(), "kumo-it-supplied-" + Guid.NewGuid().ToString("N")[..8]));
        try
        {
            await using var env = await KumoEnvironment.StartAsync(false, "--tls-cert", files.Cert, "--tls-key", files.Key, "--tls-ca", files.Ca);

            using var published = await ServerTrust.FetchCaAsync(new Uri(env.Url));
            var token = await env.Api.CreateNodeTokenAsync();
            await env.StartAgentAsync("ops1", extra: ["--join-token", token.Token, "--ca-fingerprint", operatorPki.Fingerprint]);

            Assert.Equal(operatorPki.Fingerprint, CertificateFingerprint.Of(published));
            Assert.Equal(operatorPki.Fingerprint, token.CaFingerprint);
            Assert.False(File.Exists(Path.Combine(env.StateDir, "pki", "server.crt")));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(files.Cert)!, recursive: true);
        }
    }
}
