using System.Net;
using Kumo.Server;
using Kumo.Server.Agents;
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
    public string StateDir { get; }
    public Uri Api { get; }

    public static async Task<InProcessServer> StartAsync(CancellationToken ct)
    {
        var stateDir = Directory.CreateTempSubdirectory("kumo-bench-server-").FullName;
        var options = new KumoServerOptions
        {
            StateDir = stateDir,
            ApiEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            AgentEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            // Simulated nodes never heartbeat; keep them up for the whole run.
            Health = new NodeHealthOptions { DownAfter = TimeSpan.FromHours(1) },
        };
        var app = KumoServer.Build(options, b => b.Logging.SetMinimumLevel(LogLevel.Warning));
        await app.StartAsync(ct);
        return new InProcessServer(app, stateDir, KumoServer.BoundAddresses(app).Api);
    }

    public T Get<T>() where T : notnull => App.Services.GetRequiredService<T>();

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        Directory.Delete(StateDir, recursive: true);
    }
}
