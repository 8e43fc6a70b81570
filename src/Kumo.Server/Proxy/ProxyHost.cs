using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Yarp.ReverseProxy.Configuration;

namespace Kumo.Server.Proxy;

/// <summary>
/// The reverse proxy in front of containers' published ports, a web host of its own inside kumod. It is separate
/// from the REST API's pipeline on purpose: proxied traffic is a user's public web app, not an API call, so it must
/// not be authenticated with Kumo tokens, written to the audit chain, or share the API's limits; and its routes,
/// which come and go with containers, stay out of the API's endpoint table.
/// </summary>
public sealed partial class ProxyHost(ProxyRouteTable routes, IOptions<ProxyOptions> options, ILoggerFactory loggers, ILogger<ProxyHost> logger)
    : IHostedService, IAsyncDisposable
{
    private WebApplication? _app;

    /// <summary>The bound address (port 0 resolved) once started; null when the proxy is off.</summary>
    public Uri? Address { get; private set; }

    /// <summary>The URLs of a container with a published port, as the proxy serves them; empty when the proxy is off.</summary>
    public IReadOnlyList<string> UrlsFor(Instance instance) =>
        instance is { Type: InstanceTypes.Container, Container.Ports.Count: > 0, Owner: { } owner } ? UrlsFor(owner, instance.Name) : [];

    /// <summary>The URLs of one owner's container route; empty when the proxy is off or the owner's name is no host label.</summary>
    public IReadOnlyList<string> UrlsFor(string owner, string name) =>
        Address is { } a && Names.IsValid(owner) ? ContainerRoutes.Urls(owner, name, options.Value.Domain, a.Port) : [];

    /// <summary>The instance with its proxy URLs filled in (containers with a published port, while the proxy runs).</summary>
    public Instance WithUrls(Instance instance) => UrlsFor(instance) is { Count: > 0 } urls ? instance with { Urls = urls } : instance;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.Endpoint is not { } endpoint) return;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "kumod-proxy", Args = [] });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggers);
        builder.WebHost.ConfigureKestrel(k => k.Listen(endpoint, l => l.Protocols = HttpProtocols.Http1));
        builder.Services.AddSingleton<IProxyConfigProvider>(routes.Provider);
        builder.Services.AddReverseProxy();
        var app = builder.Build();
        Configure(app);
        await app.StartAsync(cancellationToken);
        _app = app;
        Address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        LogListening(Address);
    }

    /// <summary>The proxy's pipeline; public so the routing can be exercised against a backend a test starts.</summary>
    public static void Configure(WebApplication app)
    {
        // /u/alice/web → /u/alice/web/, so the app's relative links resolve under its prefix.
        app.Use((ctx, next) =>
        {
            var path = ctx.Request.Path.Value ?? "";
            if (path.StartsWith("/u/", StringComparison.Ordinal) && path.Count(c => c == '/') == 3 && !path.EndsWith('/'))
            {
                ctx.Response.StatusCode = StatusCodes.Status308PermanentRedirect;
                ctx.Response.Headers.Location = path + "/" + ctx.Request.QueryString;
                return Task.CompletedTask;
            }
            return next(ctx);
        });
        // WebSocket upgrades need nothing here: YARP forwards the upgrade and then the raw streams both ways.
        app.UseRouting();
        // Deny by default here too: every endpoint of this host declares a permission, and the policy decides with the
        // anonymous caller, because a proxied request carries no Kumo identity.
        app.Use(async (ctx, next) =>
        {
            var permission = ctx.GetEndpoint()?.Metadata.GetMetadata<Permission>();
            var caller = Caller.Anonymous(ctx.Connection.RemoteIpAddress?.ToString() ?? "unknown");
            if (permission is null || Policy.Decide(permission.Kind, permission.Verb, caller) != Policy.Decision.Allow)
            {
                await Problems.WriteAsync(ctx, new ProblemException(403, ProblemTypes.Forbidden, "Forbidden", "this proxy endpoint is not open to the public"));
                return;
            }
            await next(ctx);
        });
        app.MapReverseProxy().Requires("proxy", "forward");
        // Lowest priority: only what no container's route takes.
        app.MapFallback("{**path}", (HttpContext ctx) => Problems.WriteAsync(ctx, new ProblemException(404, ProblemTypes.NotFound, "No such container route",
            $"no running container answers at {ctx.Request.Host}{ctx.Request.Path}; routes are http://NAME.USER.DOMAIN/ and /u/USER/NAME/")))
            .Requires("proxy", "forward");
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is not null) await _app.StopAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }

    [LoggerMessage(LogLevel.Information, "proxy: containers' published ports are served on {Address}")]
    private partial void LogListening(Uri address);
}
