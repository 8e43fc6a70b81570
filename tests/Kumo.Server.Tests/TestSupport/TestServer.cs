using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Dapper;
using Kumo.Core;
using Kumo.Core.Security;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Security;
using Kumo.Server.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Tests.TestSupport;

/// <summary>
/// A real kumod (Kestrel on loopback port 0, HTTPS, state in a temp dir) and an HttpClient for its REST API that trusts
/// the CA kumod made in STATE/pki and nothing else.
/// </summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly TempDirectory _dir;
    private readonly Settings _settings;
    private bool _handedOver;

    /// <summary>How a test server is built; kept for restarts on the same state dir.</summary>
    private sealed record Settings(TlsOptions? Tls, TimeProvider? Time, Kumo.Server.Identity.Ldap.LdapOptions? Ldap, Action<WebApplication>? Map, Action<WebApplicationBuilder>? Configure = null);

    private TestServer(TempDirectory dir, WebApplication app, Settings settings)
    {
        _dir = dir;
        _settings = settings;
        App = app;
        (Api, Agent) = KumoServer.BoundAddresses(app);
        Ca = CaTrust.LoadPem(Path.Combine(dir.Path, "pki", "ca.crt"));
        Client = new HttpClient(Trusting(Ca)) { BaseAddress = Api, Timeout = TimeSpan.FromSeconds(30) };
    }

    public WebApplication App { get; }
    public HttpClient Client { get; }
    public X509Certificate2 Ca { get; }
    public Uri Api { get; }
    public Uri Agent { get; }
    public string StateDir => _dir.Path;
    public (Uri Api, Uri Agent) Addresses => (Api, Agent);
    public Database Database => App.Services.GetRequiredService<Database>();

    /// <summary>The bootstrap admin's token; <see cref="Client"/> sends it by default.</summary>
    public string AdminToken { get; private set; } = "";

    /// <summary>A handler that trusts only <paramref name="ca"/>, and offers <paramref name="client"/> when given.</summary>
    public static SocketsHttpHandler Trusting(X509Certificate2 ca, X509Certificate2? client = null)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, chain, errors) => CaTrust.ServerRejection(ca, certificate, chain, errors) is null,
            },
        };
        if (client is not null)
        {
            handler.SslOptions.ClientCertificates = [client];
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => client;
        }
        return handler;
    }

    public static Task<TestServer> StartAsync(TlsOptions? tls = null, TimeProvider? time = null, Kumo.Server.Identity.Ldap.LdapOptions? ldap = null) =>
        StartAsync(new TempDirectory(), new Settings(tls, time, ldap, null));

    /// <param name="configure">Runs after the default logging providers are removed, e.g. to capture logs.</param>
    public static Task<TestServer> StartAsync(Action<WebApplicationBuilder> configure) =>
        StartAsync(new TempDirectory(), new Settings(null, null, null, null, configure));

    /// <summary>The REST endpoint.</summary>
    public Uri ApiAddress => Api;

    /// <summary>The agent gRPC endpoint (HTTP/2, TLS).</summary>
    public Uri AgentAddress => Agent;

    /// <summary>The reverse proxy for containers (plain HTTP).</summary>
    public Uri ProxyAddress => KumoServer.ProxyAddress(App)!;

    /// <param name="map">Extra endpoints mapped after kumod's own (tests of the pipeline itself).</param>
    public static Task<TestServer> StartAsync(Action<WebApplication> map) => StartAsync(new TempDirectory(), new Settings(null, null, null, map));

    private static async Task<TestServer> StartAsync(TempDirectory dir, Settings settings)
    {
        var app = KumoServer.Build(new KumoServerOptions
        {
            StateDir = dir.Path,
            ApiEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            AgentEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            Tls = settings.Tls ?? new(),
            Ldap = settings.Ldap,
            Proxy = new Kumo.Server.Proxy.ProxyOptions { Endpoint = new IPEndPoint(IPAddress.Loopback, 0) },
        }, b =>
        {
            b.Logging.ClearProviders();
            // KUMO_TEST_LOG=1 shows kumod's log in the test output, for when a 500 needs its stack trace.
            if (Environment.GetEnvironmentVariable("KUMO_TEST_LOG") == "1") b.Logging.AddConsole();
            if (settings.Time is not null)
                b.Services.AddSingleton(settings.Time);
            settings.Configure?.Invoke(b);
        });
        settings.Map?.Invoke(app);
        await app.StartAsync();
        var server = new TestServer(dir, app, settings);
        server.AdminPassword = File.ReadAllLines(KumoServer.InitialAdminFile(dir.Path))[1];
        server.AdminToken = await server.LoginAsync("admin", server.AdminPassword);
        server.Client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", server.AdminToken);
        return server;
    }

    /// <summary>
    /// Stops this kumod and starts a new one on the same state dir; the new one owns the dir from now on.
    /// <paramref name="whileStopped"/> runs in between, on the state dir (e.g. to change files nobody has open).
    /// </summary>
    public async Task<TestServer> RestartAsync(Func<string, Task>? whileStopped = null)
    {
        await StopAsync();
        _handedOver = true;
        if (whileStopped is not null)
            await whileStopped(_dir.Path);
        return await StartAsync(_dir, _settings);
    }

    /// <summary>The bootstrap admin's generated password, as `./kumo up` shows it.</summary>
    public string AdminPassword { get; private set; } = "";

    /// <summary>Creates a local user as the admin, logs them in and returns their session token.</summary>
    public async Task<string> AddUserAsync(string name, string password, string role = "user")
    {
        using var r = await Client.PostAsync("/api/v1/users", JsonContent.Create(new UsersPost { Name = name, Password = password, Role = role }, options: Problems.Json));
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"creating user {name}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        return await LoginAsync(name, password);
    }

    /// <summary>Logs in and returns the bearer token.</summary>
    public async Task<string> LoginAsync(string user, string password)
    {
        using var anonymous = new HttpClient(Trusting(Ca)) { BaseAddress = Api };
        using var r = await anonymous.PostAsync("/api/v1/auth/login", JsonContent.Create(new LoginRequest { Username = user, Password = password }, options: Problems.Json));
        r.EnsureSuccessStatusCode();
        return (await r.Content.ReadFromJsonAsync<LoginResponse>(Problems.Json))!.Token;
    }

    /// <summary>Creates a shared project as the admin and adds <paramref name="members"/>.</summary>
    public async Task AddProjectAsync(string name, params string[] members)
    {
        using (var created = await Client.PostAsync("/api/v1/projects", JsonContent.Create(new ProjectsPost { Name = name }, options: Problems.Json)))
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        foreach (var m in members)
        {
            using var added = await Client.PostAsync($"/api/v1/projects/{name}/members", JsonContent.Create(new MemberPost { User = m }, options: Problems.Json));
            Assert.Equal(HttpStatusCode.OK, added.StatusCode);
        }
    }

    /// <summary>Sets a user's or project's quota as the admin.</summary>
    public async Task SetQuotaAsync(string scope, string name, QuotaPut put)
    {
        using var r = await Client.PutAsync($"/api/v1/quotas/{scope}/{name}", JsonContent.Create(put, options: Problems.Json));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    /// <summary>A client acting as <paramref name="token"/>'s user (anonymous when null).</summary>
    public HttpClient ClientFor(string? token)
    {
        var c = new HttpClient(Trusting(Ca)) { BaseAddress = Api, Timeout = TimeSpan.FromSeconds(30) };
        if (token is not null) c.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return c;
    }

    /// <summary>
    /// A client whose connections come from <paramref name="source"/> (any 127.x address), so per-address logic such
    /// as the login throttle sees distinct callers.
    /// </summary>
    public HttpClient ClientFrom(IPAddress source, string? token = null)
    {
        var handler = Trusting(Ca);
        handler.ConnectCallback = async (context, ct) =>
            {
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                try
                {
                    socket.Bind(new IPEndPoint(source, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, ct);
                    return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        var c = new HttpClient(handler) { BaseAddress = Client.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        if (token is not null) c.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return c;
    }

    /// <summary>Registers a node as an agent would, without running one.</summary>
    public Task<string> AddNodeAsync(string name, int cpus = 8, string memory = "16G") =>
        App.Services.GetRequiredService<NodeService>().RegisterAsync(
            name, cpus, ByteSize.Parse(memory), "kvm", new Dictionary<string, string>(), "test", CancellationToken.None);

    public Task<long> CountInstancesAsync() =>
        Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM instances"), CancellationToken.None);

    public Task<HttpResponseMessage> CreateAsync(InstancesPost body) =>
        Client.PostAsync("/api/v1/instances", JsonContent.Create(body, options: Problems.Json));

    public async ValueTask DisposeAsync()
    {
        if (_handedOver) return;
        await StopAsync();
        _dir.Dispose();
    }

    private async Task StopAsync()
    {
        Client.Dispose();
        Ca.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

public static class ResponseAssertions
{
    /// <summary>Asserts an RFC 9457 answer with the exact status and problem type, and returns the problem.</summary>
    public static async Task<Problem> AssertProblemAsync(this HttpResponseMessage response, HttpStatusCode status, string type)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = System.Text.Json.JsonSerializer.Deserialize<Problem>(body, Problems.Json)!;
        Assert.Equal(type, problem.Type);
        Assert.Equal((int)status, problem.Status);
        return problem;
    }
}
