using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Tests.TestSupport;

/// <summary>A real kumod (Kestrel on loopback port 0, state in a temp dir) and a plain HttpClient for its REST API.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly TempDirectory _dir;

    private TestServer(TempDirectory dir, WebApplication app)
    {
        _dir = dir;
        App = app;
        (ApiAddress, AgentAddress) = KumoServer.BoundAddresses(app);
        Client = new HttpClient { BaseAddress = ApiAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public WebApplication App { get; }
    public HttpClient Client { get; }
    public Database Database => App.Services.GetRequiredService<Database>();

    /// <summary>The REST endpoint (HTTP/1.1).</summary>
    public Uri ApiAddress { get; }

    /// <summary>The agent gRPC endpoint (HTTP/2 without TLS).</summary>
    public Uri AgentAddress { get; }

    /// <param name="configure">Runs after the default logging providers are removed, e.g. to capture logs.</param>
    public static async Task<TestServer> StartAsync(Action<WebApplicationBuilder>? configure = null)
    {
        var dir = new TempDirectory();
        var app = KumoServer.Build(new KumoServerOptions
        {
            StateDir = dir.Path,
            ApiEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            AgentEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
        }, b =>
        {
            b.Logging.ClearProviders();
            configure?.Invoke(b);
        });
        await app.StartAsync();
        var server = new TestServer(dir, app);
        server.AdminPassword = File.ReadAllLines(KumoServer.InitialAdminFile(dir.Path))[1];
        server.AdminToken = await server.LoginAsync("admin", server.AdminPassword);
        server.Client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", server.AdminToken);
        return server;
    }

    /// <summary>The bootstrap admin's token; <see cref="Client"/> sends it by default.</summary>
    public string AdminToken { get; private set; } = "";

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
        using var anonymous = new HttpClient { BaseAddress = Client.BaseAddress };
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

    /// <summary>A client acting as <paramref name="token"/>'s user.</summary>
    public HttpClient ClientFor(string? token)
    {
        var c = new HttpClient { BaseAddress = Client.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        if (token is not null) c.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return c;
    }

    /// <summary>
    /// A client whose connections come from <paramref name="source"/> (any 127.x address), so per-address logic such
    /// as the login throttle sees distinct callers.
    /// </summary>
    public HttpClient ClientFrom(IPAddress source, string? token = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, ct) =>
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
            },
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
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        _dir.Dispose();
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
