using System.Net;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Tests.Api;

/// <summary>The guard itself, on a bare host: an endpoint that declares no permission is refused.</summary>
public sealed class AuthorizationTests : IAsyncLifetime
{
    private WebApplication _app = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _app = builder.Build();
        _app.UseKumoProblems();
        _app.UseRouting();
        _app.UseKumoAuthorization();
        _app.MapGet("/guarded", () => "ok").Requires("ca", "get");
        _app.MapGet("/forgotten", () => "leaked");
        await _app.StartAsync();
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        _client = new HttpClient { BaseAddress = new Uri(address) };
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task EndpointWithoutPermission_Returns403Forbidden()
    {
        var response = await _client.GetAsync("/forgotten");

        var problem = await response.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.Forbidden);
        Assert.DoesNotContain("leaked", problem.Detail);
    }

    [Fact]
    public async Task EndpointWithPermission_RunsTheHandler()
    {
        Assert.Equal("ok", await _client.GetStringAsync("/guarded"));
    }

    [Fact]
    public async Task WrongMethodOnGuardedEndpoint_Returns405NotForbidden()
    {
        await (await _client.PostAsync("/guarded", null)).AssertProblemAsync(HttpStatusCode.MethodNotAllowed, ProblemTypes.Validation);
    }
}
