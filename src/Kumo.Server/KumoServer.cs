using System.Net;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Audit;
using Kumo.Server.Images;
using Kumo.Server.Instances;
using Kumo.Server.Operations;
using Kumo.Server.Scheduling;
using Kumo.Server.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server;

public sealed record KumoServerOptions
{
    /// <summary>Database, logs and run files live here.</summary>
    public required string StateDir { get; init; }

    /// <summary>REST API endpoint; port 0 picks a free port (tests).</summary>
    public IPEndPoint ApiEndpoint { get; init; } = new(IPAddress.Loopback, 7400);

    /// <summary>Agent gRPC endpoint (HTTP/2 only).</summary>
    public IPEndPoint AgentEndpoint { get; init; } = new(IPAddress.Loopback, 7401);

    public NodeHealthOptions Health { get; init; } = new();
    public SchedulerOptions Scheduler { get; init; } = new();
    public InstanceDefaults Defaults { get; init; } = new();
}

/// <summary>Builds and runs the control plane: REST API, agent gRPC service, store, scheduler and loops.</summary>
public static class KumoServer
{
    public const string Version = "0.1.0";

    public static WebApplication Build(KumoServerOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        Directory.CreateDirectory(options.StateDir);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "kumod", Args = [] });
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(options.ApiEndpoint, l => l.Protocols = HttpProtocols.Http1);
            k.Listen(options.AgentEndpoint, l => l.Protocols = HttpProtocols.Http2);
            k.Limits.MaxRequestBodySize = 1L << 30;
        });

        var s = builder.Services;
        s.AddSingleton(options);
        s.AddSingleton(TimeProvider.System);
        s.AddSingleton(_ => new Database(Path.Combine(options.StateDir, "kumo.db")));
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Scheduler));
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Health));
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Defaults));
        s.AddSingleton<Scheduler>();
        s.AddSingleton<OperationHub>();
        s.AddSingleton<OperationStore>();
        s.AddSingleton<NodeSignals>();
        s.AddSingleton<InstanceService>();
        s.AddSingleton<NodeService>();
        s.AddSingleton<ImageService>();
        s.AddSingleton<AuditLog>();
        s.AddHostedService<NodeLivenessMonitor>();
        s.AddGrpc();
        s.AddOpenApi();
        s.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull;
            o.SerializerOptions.Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping;
        });
        configure?.Invoke(builder);

        var app = builder.Build();
        var db = app.Services.GetRequiredService<Database>();
        app.Services.GetRequiredService<Scheduler>().Load(db);
        app.Services.GetRequiredService<ImageService>().EnsureBuiltInsAsync(CancellationToken.None).GetAwaiter().GetResult();
        app.Services.GetRequiredService<AuditLog>().Start();

        // Audit is outermost, on purpose:
        // - every request passes it, including those no endpoint takes (404 from routing, routing's own 405/415
        //   endpoints) and those refused further in (authentication's 401, authorization's 403);
        // - it sees the status the caller actually gets, after UseKumoProblems turned exceptions into problem+json;
        // - it holds the whole response back until the entry is durable, and nothing outside it can send a byte first.
        // It needs nothing from the inner middleware before it runs: it reads the endpoint (set by routing) and the
        // caller (set by authentication) from the HttpContext when it writes the entry, after they have run.
        app.UseKumoAudit();
        app.UseKumoProblems();
        app.UseRouting();
        app.UseKumoAuthorization();

        app.MapOpenApi().Requires("openapi", "get");
        app.MapGrpcService<AgentControlService>().Requires("agent", "control");
        var api = app.MapGroup("/api/v1");
        api.MapGet("/", async (NodeService nodes, CancellationToken ct) => new ServerInfo
        {
            Version = Version,
            StateDir = options.StateDir,
            Nodes = (await nodes.ListAsync(ct)).Count,
        }).Requires("server", "get");
        ResourceEndpoints.MapNodes(api);
        ResourceEndpoints.MapImages(api);
        InstanceEndpoints.Map(api);
        ResourceEndpoints.MapOperations(api);
        ResourceEndpoints.MapAdmin(api);
        AuditEndpoints.Map(api);
        app.Lifetime.ApplicationStopped.Register(() => db.DisposeAsync().AsTask().GetAwaiter().GetResult());
        return app;
    }

    /// <summary>The addresses Kestrel actually bound (port 0 resolved), REST first then agent gRPC.</summary>
    public static (Uri Api, Uri Agent) BoundAddresses(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToList();
        return (new Uri(addresses[0]), new Uri(addresses[1]));
    }
}
