using System.Net;
using System.Text.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Api;

public sealed class RoutingTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Theory]
    [InlineData("/api/v1/nothing-here")]
    [InlineData("/api/v2/instances")]
    [InlineData("/")]
    public async Task Get_UnknownRoute_Returns404Problem(string path)
    {
        var problem = await (await _server.Client.GetAsync(path)).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);

        Assert.Equal(path, problem.Instance);
    }

    [Fact]
    public async Task WrongMethod_OnKnownRoute_Returns405Problem()
    {
        var response = await _server.Client.DeleteAsync("/api/v1/instances");

        await response.AssertProblemAsync(HttpStatusCode.MethodNotAllowed, ProblemTypes.Validation);
    }

    [Fact]
    public async Task OpenApiDocument_ListsTheInstancesCollection()
    {
        var response = await _server.Client.GetAsync("/openapi/v1.json");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var paths = doc.RootElement.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains("/api/v1/instances", paths);
        Assert.Contains("/api/v1/instances/{name}", paths);
        var instances = doc.RootElement.GetProperty("paths").GetProperty("/api/v1/instances");
        Assert.True(instances.TryGetProperty("get", out _));
        Assert.True(instances.TryGetProperty("post", out _));
    }

    [Fact]
    public void EveryRouteEndpoint_DeclaresAPermission()
    {
        var endpoints = _server.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().ToList();

        Assert.NotEmpty(endpoints);
        var unguarded = endpoints.Where(e => e.Metadata.GetMetadata<Permission>() is null)
            .Select(e => $"{e.DisplayName} ({e.RoutePattern.RawText})").ToList();
        Assert.Empty(unguarded);
    }

    [Fact]
    public async Task EveryOpenApiOperation_IsARouteEndpointWithAPermission()
    {
        using var doc = JsonDocument.Parse(await _server.Client.GetStringAsync("/openapi/v1.json"));
        var guarded = _server.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.Metadata.GetMetadata<Permission>() is not null)
            .SelectMany(e => (e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? ["*"])
                .Select(m => $"{m} {Normalize(e.RoutePattern.RawText)}"))
            .ToHashSet();

        var documented = doc.RootElement.GetProperty("paths").EnumerateObject()
            .SelectMany(p => p.Value.EnumerateObject().Select(op => $"{op.Name.ToUpperInvariant()} {Normalize(p.Name)}"))
            .ToList();

        Assert.True(documented.Count > 10, $"only {documented.Count} operations documented");
        Assert.All(documented, op => Assert.Contains(op, guarded));
    }

    [Fact]
    public async Task ServerInfo_ReportsVersionAndNodeCount()
    {
        await _server.AddNodeAsync("node-a");

        var info = await _server.Client.GetStringAsync("/api/v1");

        using var doc = JsonDocument.Parse(info);
        Assert.Equal(KumoServer.Version, doc.RootElement.GetProperty("version").GetString());
        Assert.Equal(1, doc.RootElement.GetProperty("nodes").GetInt32());
    }

    private static string Normalize(string? route) => "/" + (route ?? "").Trim('/');
}
