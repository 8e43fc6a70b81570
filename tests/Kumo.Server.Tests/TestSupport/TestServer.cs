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
    private readonly Action<WebApplication>? _map;
    private bool _handedOver;

    private TestServer(TempDirectory dir, WebApplication app, Action<WebApplication>? map)
    {
        _dir = dir;
        _map = map;
        App = app;
        (Api, Agent) = KumoServer.BoundAddresses(app);
        Client = new HttpClient { BaseAddress = Api, Timeout = TimeSpan.FromSeconds(30) };
    }

    public WebApplication App { get; }
    public HttpClient Client { get; }
    public Uri Api { get; }
    public Uri Agent { get; }
    public string StateDir => _dir.Path;
    public Database Database => App.Services.GetRequiredService<Database>();

    /// <param name="map">Extra endpoints mapped after kumod's own (tests of the pipeline itself).</param>
    public static Task<TestServer> StartAsync(Action<WebApplication>? map = null) => StartAsync(new TempDirectory(), map);

    private static async Task<TestServer> StartAsync(TempDirectory dir, Action<WebApplication>? map)
    {
        var app = KumoServer.Build(new KumoServerOptions
        {
            StateDir = dir.Path,
            ApiEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            AgentEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
        }, b => b.Logging.ClearProviders());
        map?.Invoke(app);
        await app.StartAsync();
        return new TestServer(dir, app, map);
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
        return await StartAsync(_dir, _map);
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
