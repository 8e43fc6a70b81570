using System.Net;
using Kumo.Core;
using Kumo.Core.Security;
using Kumo.Server.Accounting;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Audit;
using Kumo.Server.Images;
using Kumo.Server.Instances;
using Kumo.Server.Operations;
using Kumo.Server.Proxy;
using Kumo.Server.Scheduling;
using Kumo.Server.Security;
using Kumo.Server.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server;

public sealed record KumoServerOptions
{
    /// <summary>Database, logs and run files live here.</summary>
    public required string StateDir { get; init; }

    /// <summary>REST API endpoint (HTTPS unless <see cref="TlsOptions.InsecureHttp"/>); port 0 picks a free port (tests).</summary>
    public IPEndPoint ApiEndpoint { get; init; } = new(IPAddress.Loopback, 7400);

    /// <summary>Agent gRPC endpoint (HTTP/2 over TLS, client certificates).</summary>
    public IPEndPoint AgentEndpoint { get; init; } = new(IPAddress.Loopback, 7401);

    public TlsOptions Tls { get; init; } = new();

    public NodeHealthOptions Health { get; init; } = new();
    public SchedulerOptions Scheduler { get; init; } = new();
    public InstanceDefaults Defaults { get; init; } = new();
    public QuotaDefaults Quotas { get; init; } = new();
    public Images.ImageOptions Images { get; init; } = new();
    public Monitoring.MetricsOptions Metrics { get; init; } = new();
    public Debugging.DebugPortOptions Debug { get; init; } = new();
    public Networking.PortForwardOptions PortForwards { get; init; } = new();
    public Clusters.ClusterOptions Clusters { get; init; } = new();
    public LiveMigration.MigrationOptions Migration { get; init; } = new();

    /// <summary>The reverse proxy for containers; off unless <see cref="ProxyOptions.Endpoint"/> is set (kumod's default: 127.0.0.1:7480).</summary>
    public ProxyOptions Proxy { get; init; } = new();

    /// <summary>Optional external directory consulted for users who are not local (tests plug their own in).</summary>
    public ExternalAuthenticator? ExternalAuthenticator { get; init; }

    /// <summary>LDAP directory for logins of users who are not local; ignored when <see cref="ExternalAuthenticator"/> is set.</summary>
    public Identity.Ldap.LdapOptions? Ldap { get; init; }

    /// <summary>
    /// Development and benchmarking only (kumod --dev-no-auth-no-audit): the REST API reads no token, decides no
    /// policy and writes no audit entry; every request acts as the first admin. It exists so `./kumo bench` can
    /// measure what AAA costs. Refused unless the API listens on loopback; kumod logs it as critical at start.
    /// The agent endpoint is unchanged (mTLS, node checks).
    /// </summary>
    public bool DevNoAuthNoAudit { get; init; }

    /// <summary>
    /// Benchmarks only, never a kumod flag: audit entries are written to the journal but NOT made durable before the
    /// answer, so `./kumo bench` can show how much of AAA's cost is the durable write itself.
    /// </summary>
    internal bool BenchAuditJournalWithoutSync { get; init; }
}

/// <summary>Builds and runs the control plane: REST API, agent gRPC service, store, scheduler and loops.</summary>
public static partial class KumoServer
{
    public const string Version = "0.1.0";

    public static WebApplication Build(KumoServerOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        if (options.DevNoAuthNoAudit && !IPAddress.IsLoopback(options.ApiEndpoint.Address))
            throw new InvalidOperationException(
                $"--dev-no-auth-no-audit is refused: the REST API would listen on {options.ApiEndpoint}, and without authentication it may only listen on loopback");
        Directory.CreateDirectory(options.StateDir);
        // kumod reads no appsettings files, so nothing is watched: by default the host watches the current directory
        // tree for config changes, and when that tree holds the state dir every database write wakes the watcher.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = "kumod",
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        // The proxy logs through this factory too; YARP's Information is a line per proxied request.
        builder.Logging.AddFilter("Yarp", LogLevel.Warning);
        var pki = ServerPki.LoadOrCreate(options.StateDir, options.Tls, [options.ApiEndpoint.Address, options.AgentEndpoint.Address], TimeProvider.System);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(options.ApiEndpoint, l =>
            {
                l.Protocols = HttpProtocols.Http1;
                if (!options.Tls.InsecureHttp)
                    l.UseHttps(new HttpsConnectionAdapterOptions { ServerCertificate = pki.ServerCertificate, ServerCertificateChain = pki.ServerChain });
            });
            k.Listen(options.AgentEndpoint, l =>
            {
                l.Protocols = HttpProtocols.Http2;
                // Authentication tells agent calls from user calls by the endpoint they arrived on.
                l.Use(next => connection =>
                {
                    connection.Items[Api.Authorization.AgentEndpointItem] = true;
                    return next(connection);
                });
                // A client certificate is optional at the handshake only because Join comes before the node has one;
                // every other call is refused without it (AgentControlService). One from another CA fails the handshake.
                l.UseHttps(new HttpsConnectionAdapterOptions
                {
                    ServerCertificate = pki.ServerCertificate,
                    ServerCertificateChain = pki.ServerChain,
                    ClientCertificateMode = ClientCertificateMode.AllowCertificate,
                    ClientCertificateValidation = (certificate, chain, _) =>
                        CaTrust.ChainsTo(certificate, pki.Authority.Certificate, CaTrust.ClientAuth, chain),
                });
            });
            k.Limits.MaxRequestBodySize = 1L << 30;
        });

        var s = builder.Services;
        s.AddSingleton(options);
        s.AddSingleton(pki);
        s.AddSingleton(TimeProvider.System);
        s.AddSingleton(_ => new Database(Path.Combine(options.StateDir, "kumo.db")));
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Scheduler));
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Health));
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Defaults));
        s.AddSingleton<Scheduler>();
        s.AddSingleton<OperationHub>();
        s.AddSingleton<OperationStore>();
        s.AddSingleton<NodeSignals>();
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Quotas));
        s.AddSingleton<QuotaService>();
        s.AddSingleton<TokenService>();
        s.AddSingleton<LoginThrottle>();
        s.AddSingleton(sp => new UserService(sp.GetRequiredService<Database>(), sp.GetRequiredService<TokenService>(),
            sp.GetRequiredService<LoginThrottle>(), sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<UserService>>(), options.ExternalAuthenticator ?? LdapLogin(options.Ldap, sp)));
        s.AddSingleton<ProjectService>();
        s.AddSingleton<InstanceService>();
        s.AddSingleton<Networking.NetworkService>();
        s.AddSingleton<Templates.TemplateService>();
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.PortForwards));
        s.AddSingleton<Networking.PortForwardService>();
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Clusters));
        s.AddSingleton<Clusters.ClusterService>();
        s.AddHostedService<Clusters.ClusterReconciler>();
        s.AddSingleton<Snapshots.SnapshotService>();
        s.AddSingleton<Volumes.VolumeService>();
        s.AddSingleton<NodeService>();
        s.AddSingleton<ImageService>();
        s.AddSingleton<ContainerImageBuilds>();
        s.AddSingleton(new ImageStorage(options.StateDir));
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Images));
        s.AddSingleton<ImageImporter>();
        s.AddSingleton<BaseImageBuilder>();
        s.AddSingleton<ImageExport>();
        s.AddSingleton<JoinTokens>();
        s.AddSingleton<NodeCertificates>();
        s.AddSingleton<AuditLog>();
        s.AddSingleton<UsageService>();
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Metrics));
        s.AddSingleton<Monitoring.MetricsStore>();
        s.AddSingleton<Monitoring.MetricsService>();
        s.AddSingleton<Consoles.ConsoleBroker>();
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Debug));
        s.AddSingleton<Debugging.DebugService>();
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Migration));
        s.AddSingleton<LiveMigration.MigrationService>();
        s.AddHostedService<NodeLivenessMonitor>();
        s.AddSingleton(Microsoft.Extensions.Options.Options.Create(options.Proxy));
        s.AddSingleton<ProxyRouteTable>();
        s.AddHostedService(sp => sp.GetRequiredService<ProxyRouteTable>());
        s.AddSingleton<ProxyHost>();
        s.AddHostedService(sp => sp.GetRequiredService<ProxyHost>());
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
        app.Services.GetRequiredService<ImageStorage>().RecoverAsync(db, TimeProvider.System, CancellationToken.None).GetAwaiter().GetResult();
        app.Services.GetRequiredService<UserService>().BootstrapAsync(InitialAdminFile(options.StateDir), CancellationToken.None).GetAwaiter().GetResult();
        app.Services.GetRequiredService<AuditLog>().Start();
        app.Services.GetRequiredService<Debugging.DebugService>().Sweep();

        // Audit is outermost, on purpose:
        // - every request passes it, including those no endpoint takes (404 from routing, routing's own 405/415
        //   endpoints) and those refused further in (authentication's 401, authorization's 403);
        // - it sees the status the caller actually gets, after UseKumoProblems turned exceptions into problem+json;
        // - it holds the whole response back until the entry is durable, and nothing outside it can send a byte first.
        // It needs nothing from the inner middleware before it runs: it reads the endpoint (set by routing) and the
        // caller (set by authentication) from the HttpContext when it writes the entry, after they have run.
        var devCaller = options.DevNoAuthNoAudit ? DevCaller(db) : null;
        if (devCaller is null)
            app.UseKumoAudit();
        app.UseKumoProblems();
        // After audit, which wraps the upgrade so a WebSocket session is recorded like any other request.
        app.UseWebSockets();
        app.UseRouting();
        app.UseKumoAuthentication(devCaller);
        app.UseKumoAuthorization(devCaller is not null);

        app.MapOpenApi().Requires("openapi", "get");
        app.MapGrpcService<AgentControlService>().Requires("agent", "control");
        var api = app.MapGroup("/api/v1");
        api.MapGet("/", async (NodeService nodes, CancellationToken ct) => new ServerInfo
        {
            Version = Version,
            StateDir = options.StateDir,
            Nodes = (await nodes.ListAsync(ct)).Count,
        }).Requires("server", "get");
        SecurityEndpoints.Map(api);
        ResourceEndpoints.MapNodes(api);
        ResourceEndpoints.MapImages(api);
        InstanceEndpoints.Map(api);
        NetworkEndpoints.Map(api);
        TemplateEndpoints.Map(api);
        PortForwardEndpoints.Map(api);
        ClusterEndpoints.Map(api);
        SnapshotEndpoints.Map(api);
        VolumeEndpoints.Map(api);
        ConsoleEndpoints.Map(api);
        ContainerSessionEndpoints.Map(api);
        DebugEndpoints.Map(api);
        MigrationEndpoints.Map(api);
        IdentityEndpoints.Map(api);
        ResourceEndpoints.MapOperations(api);
        ProxyEndpoints.Map(api);
        ResourceEndpoints.MapAdmin(api);
        AuditEndpoints.Map(api);
        UsageEndpoints.Map(api);
        MetricsEndpoints.Map(app, api);
        app.Lifetime.ApplicationStopped.Register(() => db.DisposeAsync().AsTask().GetAwaiter().GetResult());
        LogTls(app.Logger, pki, options);
        if (devCaller is not null)
            LogDevNoAuthNoAudit(app.Logger, options.ApiEndpoint, devCaller.UserName!);
        return app;
    }

    /// <summary>Who every REST request is under --dev-no-auth-no-audit: the first admin that is not disabled.</summary>
    private static Caller DevCaller(Database db)
    {
        var admin = db.ReadAsync(c => Dapper.SqlMapper.QueryFirstOrDefault<UserRow>(c,
            "SELECT * FROM users WHERE role = @role AND disabled = 0 ORDER BY created_at, name", new { role = Roles.Admin }), CancellationToken.None)
            .GetAwaiter().GetResult() ?? throw new InvalidOperationException("--dev-no-auth-no-audit needs an enabled admin user to act as");
        return new Caller(admin.Id, admin.Name, Roles.Admin, "dev-no-auth");
    }

    /// <summary>Adapts the LDAP authenticator to login: null means "no", an unreachable directory is a 503.</summary>
    private static ExternalAuthenticator? LdapLogin(Identity.Ldap.LdapOptions? ldap, IServiceProvider sp)
    {
        if (ldap is null) return null;
        var authenticator = new Identity.Ldap.LdapAuthenticator(ldap, sp.GetRequiredService<ILogger<Identity.Ldap.LdapAuthenticator>>());
        return async (user, password, ct) =>
        {
            try
            {
                var found = await authenticator.AuthenticateAsync(user, password, ct);
                return found is null ? null : new ExternalUser(found.Username, found.IsAdmin);
            }
            catch (Identity.Ldap.LdapUnavailableException e)
            {
                throw new ProblemException(503, Core.ProblemTypes.DirectoryUnavailable, "The user directory is unreachable", e.Message);
            }
        };
    }

    /// <summary>Where a fresh install leaves the first admin's credential (user name, then password), mode 0600.</summary>
    public static string InitialAdminFile(string stateDir) => Path.Combine(stateDir, "initial-admin");

    private static void LogTls(ILogger logger, ServerPki pki, KumoServerOptions options)
    {
        foreach (var change in pki.Changes)
            LogPkiChange(logger, change);
        LogCa(logger, pki.CaFingerprint, pki.Supplied ? options.Tls.CaFile! : pki.CaPath);
        if (options.Tls.InsecureHttp)
            LogInsecure(logger, options.ApiEndpoint);
    }

    [LoggerMessage(LogLevel.Information, "TLS: {Change}")]
    private static partial void LogPkiChange(ILogger logger, string change);

    [LoggerMessage(LogLevel.Information, "TLS: CA fingerprint (SHA-256) {Fingerprint} ({Path}); clients pin it on first use")]
    private static partial void LogCa(ILogger logger, string fingerprint, string path);

    [LoggerMessage(LogLevel.Warning,
        "--insecure-http: the REST API on {Endpoint} is plain HTTP, for development only: requests and credentials travel unencrypted")]
    private static partial void LogInsecure(ILogger logger, IPEndPoint endpoint);

    [LoggerMessage(LogLevel.Critical,
        "--dev-no-auth-no-audit: the REST API on {Endpoint} authenticates NOBODY, authorizes EVERYTHING as admin '{Admin}' and writes NO audit log. Benchmarks and development only; never run a shared kumod like this")]
    private static partial void LogDevNoAuthNoAudit(ILogger logger, IPEndPoint endpoint, string admin);

    /// <summary>The reverse proxy's bound address (port 0 resolved); null when it is off.</summary>
    public static Uri? ProxyAddress(WebApplication app) => app.Services.GetRequiredService<ProxyHost>().Address;

    /// <summary>The addresses Kestrel actually bound (port 0 resolved), REST first then agent gRPC.</summary>
    public static (Uri Api, Uri Agent) BoundAddresses(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToList();
        return (new Uri(addresses[0]), new Uri(addresses[1]));
    }
}
