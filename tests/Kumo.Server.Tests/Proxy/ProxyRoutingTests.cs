using System.Net;
using System.Net.WebSockets;
using System.Text;
using Dapper;
using Kumo.Core;
using Kumo.Server.Proxy;
using Kumo.Server.Tests.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Tests.Proxy;

/// <summary>
/// The proxy's routing against a backend this test runs on loopback, standing in for a container's published port:
/// the instance rows are written as kumod writes them, so the route table is built by the same code as in production.
/// Real containers behind the proxy are covered by the integration tests (ContainerProxyTests).
/// </summary>
public sealed class ProxyRoutingTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private WebApplication _backend = null!;
    private int _backendPort;
    private readonly string _token = Guid.NewGuid().ToString("n");
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false });

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        await _server.AddUserAsync("alice", "alice-password");
        await _server.AddNodeAsync("node-a");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        _backend = builder.Build();
        _backend.UseWebSockets();
        // Answers with what it was asked, so the test sees the path and headers the proxy forwarded.
        _backend.Run(async ctx =>
        {
            if (ctx.WebSockets.IsWebSocketRequest)
            {
                using var ws = await ctx.WebSockets.AcceptWebSocketAsync();
                var buffer = new byte[1024];
                while (true)
                {
                    var r = await ws.ReceiveAsync(buffer, ctx.RequestAborted);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, ctx.RequestAborted);
                        return;
                    }
                    await ws.SendAsync(buffer.AsMemory(0, r.Count), r.MessageType, r.EndOfMessage, ctx.RequestAborted);
                }
            }
            await ctx.Response.WriteAsync($"{_token} {ctx.Request.Path}{ctx.Request.QueryString} prefix={ctx.Request.Headers["X-Forwarded-Prefix"]}");
        });
        await _backend.StartAsync();
        _backendPort = new Uri(_backend.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _backend.DisposeAsync();
        await _server.DisposeAsync();
    }

    private ProxyRouteTable Table => _server.App.Services.GetRequiredService<ProxyRouteTable>();

    /// <summary>Writes a container instance of alice's as placing and the agent's reports would leave it.</summary>
    private Task<int> AddContainerAsync(string name, string state, int hostPort, string project = "alice", string createdAt = "2026-01-01T00:00:00.000Z") =>
        _server.Database.WriteAsync(ctx =>
        {
            var owner = ctx.Connection.ExecuteScalar<string>("SELECT id FROM users WHERE name = 'alice'", transaction: ctx.Transaction);
            var node = ctx.Connection.ExecuteScalar<string>("SELECT id FROM nodes WHERE name = 'node-a'", transaction: ctx.Transaction);
            var spec = System.Text.Json.JsonSerializer.Serialize(new ContainerSpec { Ports = [new PortMapping { ContainerPort = 80, HostPort = hostPort }] },
                new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web));
            ctx.Connection.Execute(
                """
                INSERT INTO instances (id, name, project, owner_id, type, image, cpus, memory_bytes, disk_bytes, node_id, state, desired_power,
                    stop_mode, version, created_at, updated_at, container)
                VALUES (@id, @name, @project, @owner, 'container', 'busybox', 1, 67108864, 0, @node, @state, @state, 'graceful', 1, @createdAt, @createdAt, @spec)
                """, new { id = Guid.NewGuid().ToString("n"), name, project, owner, node, state, spec, createdAt }, ctx.Transaction);
            return 0;
        }, CancellationToken.None);

    private Task<int> SetStateAsync(string name, string state) =>
        _server.Database.WriteAsync(ctx => ctx.Connection.Execute("UPDATE instances SET state = @state, desired_power = @state WHERE name = @name",
            new { name, state }, ctx.Transaction), CancellationToken.None);

    private async Task<(HttpStatusCode Status, string? Type, string Body)> GetAsync(string path, string? host = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_server.ProxyAddress, path));
        if (host is not null) request.Headers.Host = host;
        using var response = await _http.SendAsync(request);
        return (response.StatusCode, response.Content.Headers.ContentType?.MediaType, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task RunningContainer_IsServedByHostWithItsPath_AndByPathWithThePrefixStripped()
    {
        await AddContainerAsync("web", InstanceStates.Running, _backendPort);
        await Table.RefreshAsync(CancellationToken.None);

        var byHost = await GetAsync("/a/b?x=1", "web.alice.localhost");
        Assert.Equal(HttpStatusCode.OK, byHost.Status);
        Assert.Equal($"{_token} /a/b?x=1 prefix=", byHost.Body);
        // Any port: the host route holds whichever port the proxy listens on.
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/", "web.alice.localhost:7480")).Status);

        var byPath = await GetAsync("/u/alice/web/a/b?x=1");
        Assert.Equal(HttpStatusCode.OK, byPath.Status);
        Assert.Equal($"{_token} /a/b?x=1 prefix=/u/alice/web", byPath.Body);
        Assert.Equal($"{_token} / prefix=/u/alice/web", (await GetAsync("/u/alice/web/")).Body);
    }

    [Fact]
    public async Task OnTheContainersHost_EveryPathIsTheContainers_EvenOneLookingLikeAPathRoute()
    {
        await AddContainerAsync("web", InstanceStates.Running, _backendPort);
        await AddContainerAsync("other", InstanceStates.Running, 1);
        await Table.RefreshAsync(CancellationToken.None);

        var r = await GetAsync("/u/alice/other/", "web.alice.localhost");

        Assert.Equal($"{_token} /u/alice/other/ prefix=", r.Body);
    }

    [Fact]
    public async Task UnknownRoute_Is404ProblemJson()
    {
        var r = await GetAsync("/", "nothing.alice.localhost");

        Assert.Equal(HttpStatusCode.NotFound, r.Status);
        Assert.Equal("application/problem+json", r.Type);
        Assert.Contains(ProblemTypes.NotFound, r.Body);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync("/u/alice/nothing/x")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync("/favicon.ico")).Status);
    }

    [Fact]
    public async Task StoppedContainer_HasNoRoute_AndARouteGoesWhenItsContainerStops()
    {
        await AddContainerAsync("off", InstanceStates.Stopped, _backendPort);
        await AddContainerAsync("web", InstanceStates.Running, _backendPort);
        await Table.RefreshAsync(CancellationToken.None);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync("/", "off.alice.localhost")).Status);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/", "web.alice.localhost")).Status);

        await SetStateAsync("web", InstanceStates.Stopped);
        await Table.RefreshAsync(CancellationToken.None);

        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync("/", "web.alice.localhost")).Status);
        Assert.Empty(Table.Current);
        Assert.False(await Table.RefreshAsync(CancellationToken.None));
    }

    [Fact]
    public async Task RefreshLoop_PicksUpANewContainer_WithoutBeingAsked()
    {
        await AddContainerAsync("later", InstanceStates.Running, _backendPort);

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while ((await GetAsync("/", "later.alice.localhost")).Status != HttpStatusCode.OK)
        {
            Assert.True(DateTime.UtcNow < deadline, "the route never appeared");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task SameNameInTwoOfTheOwnersProjects_TheOlderContainerKeepsTheRoute()
    {
        await _server.AddProjectAsync("lab", "alice");
        await AddContainerAsync("web", InstanceStates.Running, 1, project: "lab", createdAt: "2026-02-01T00:00:00.000Z");
        await AddContainerAsync("web", InstanceStates.Running, _backendPort, project: "alice", createdAt: "2026-01-01T00:00:00.000Z");
        await Table.RefreshAsync(CancellationToken.None);

        var route = Assert.Single(Table.Current);
        Assert.Equal("alice", route.Project);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/", "web.alice.localhost")).Status);
    }

    [Fact]
    public async Task PathRouteWithoutTrailingSlash_RedirectsToIt()
    {
        using var response = await _http.GetAsync(new Uri(_server.ProxyAddress, "/u/alice/web?x=1"));

        Assert.Equal(HttpStatusCode.PermanentRedirect, response.StatusCode);
        Assert.Equal("/u/alice/web/?x=1", response.Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task WebSocket_IsPassedThrough_BothWays()
    {
        await AddContainerAsync("ws", InstanceStates.Running, _backendPort);
        await Table.RefreshAsync(CancellationToken.None);
        using var ws = new ClientWebSocket();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await ws.ConnectAsync(new UriBuilder(_server.ProxyAddress) { Scheme = "ws", Path = "/u/alice/ws/" }.Uri, cts.Token);

        var received = new List<string>();
        foreach (var message in new[] { _token, "second " + _token })
        {
            await ws.SendAsync(Encoding.UTF8.GetBytes(message), WebSocketMessageType.Text, true, cts.Token);
            var buffer = new byte[256];
            var r = await ws.ReceiveAsync(buffer, cts.Token);
            received.Add(Encoding.UTF8.GetString(buffer, 0, r.Count));
        }
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);

        Assert.Equal([_token, "second " + _token], received);
    }

    [Fact]
    public async Task InstanceJson_CarriesTheProxyUrls_OnlyForContainersWithAPublishedPort()
    {
        await AddContainerAsync("web", InstanceStates.Running, _backendPort);
        var alice = _server.ClientFor(await _server.LoginAsync("alice", "alice-password"));

        var web = await System.Net.Http.Json.HttpClientJsonExtensions.GetFromJsonAsync<Instance>(alice, "/api/v1/instances/web", Kumo.Server.Api.Problems.Json);

        var port = _server.ProxyAddress.Port;
        Assert.Equal("alice", web!.Owner);
        Assert.Equal([$"http://web.alice.localhost:{port}/", $"http://localhost:{port}/u/alice/web/"], web.Urls);
        alice.Dispose();
    }
}
