using System.Net;
using Kumo.Server;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Bench;

/// <summary>kumod's control plane inside the bench process (KumoServer.Build, port 0, temp state dir), without agents.</summary>
internal sealed class InProcessServer : IAsyncDisposable
{
    private InProcessServer(WebApplication app, string stateDir, Uri api)
    {
        App = app;
        StateDir = stateDir;
        Api = api;
    }

    public WebApplication App { get; }

    /// <summary>The bootstrap admin, acting as the caller of in-process service calls.</summary>
    public Caller Admin { get; private set; } = null!;

    /// <summary>A bearer token of the admin for HTTP requests.</summary>
    public string Token { get; private set; } = "";
    public string StateDir { get; }
    public Uri Api { get; }

    /// <param name="devNoAuthNoAudit">kumod --dev-no-auth-no-audit: no token read, no policy decided, no audit written.</param>
    /// <param name="auditWithoutSync">Audit entries written but not made durable (diagnostic, see KumoServerOptions).</param>
    public static async Task<InProcessServer> StartAsync(CancellationToken ct, bool devNoAuthNoAudit = false, bool auditWithoutSync = false)
    {
        var stateDir = Directory.CreateTempSubdirectory("kumo-bench-server-").FullName;
        var options = new KumoServerOptions
        {
            StateDir = stateDir,
            ApiEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            AgentEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            // Simulated nodes never heartbeat; keep them up for the whole run.
            Health = new NodeHealthOptions { DownAfter = TimeSpan.FromHours(1) },
            DevNoAuthNoAudit = devNoAuthNoAudit,
            BenchAuditJournalWithoutSync = auditWithoutSync,
        };
        var app = KumoServer.Build(options, b => b.Logging.SetMinimumLevel(LogLevel.Warning));
        await app.StartAsync(ct);
        var server = new InProcessServer(app, stateDir, KumoServer.BoundAddresses(app).Api);
        var admin = await server.Get<UserService>().GetAsync("admin", ct);
        server.Admin = new Caller(admin.Id, admin.Name, admin.Role, "bench");
        using var http = new HttpClient(KumodTls.Handler(stateDir)) { BaseAddress = server.Api };
        server.Token = await LoginAsync(http, stateDir, ct);
        return server;
    }

    /// <summary>Logs in as the bootstrap admin (STATE/initial-admin) and sets the client's bearer token.</summary>
    public static async Task<string> LoginAsync(HttpClient http, string stateDir, CancellationToken ct)
    {
        var file = KumoServer.InitialAdminFile(stateDir);
        if (!File.Exists(file)) throw new HttpRequestException("kumod has not written its initial admin yet");
        var lines = await File.ReadAllLinesAsync(file, ct);
        using var r = await http.PostAsJsonAsync("/api/v1/auth/login", new LoginRequest { Username = lines[0], Password = lines[1] }, ct);
        r.EnsureSuccessStatusCode();
        var token = (await r.Content.ReadFromJsonAsync<LoginResponse>(ct))!.Token;
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return token;
    }

    public T Get<T>() where T : notnull => App.Services.GetRequiredService<T>();

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        Directory.Delete(StateDir, recursive: true);
    }
}
