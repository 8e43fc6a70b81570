using System.CommandLine;
using System.Net;
using Kumo.Agent;
using Kumo.Server;
using Kumo.Server.Agents;
using Kumo.Server.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Kumo.Daemon;

/// <summary>kumod's command line: the control plane, plus a local agent with --all-in-one.</summary>
public static class DaemonCommand
{
    public static RootCommand Build()
    {
        var stateDir = new Option<string>("--state-dir") { Description = "State directory (default: $KUMO_STATE_DIR or /var/lib/kumo)" };
        var listen = new Option<string>("--listen") { Description = "REST API address", DefaultValueFactory = _ => "127.0.0.1:7400" };
        var agentListen = new Option<string>("--agent-listen") { Description = "Agent gRPC address (HTTP/2)", DefaultValueFactory = _ => "127.0.0.1:7401" };
        var allInOne = new Option<bool>("--all-in-one") { Description = "Also run an agent for this machine inside kumod" };
        var downAfter = new Option<double>("--down-after-seconds") { Description = "Mark a node down after this long without heartbeats", DefaultValueFactory = _ => 10 };
        var heartbeat = new Option<double>("--heartbeat-seconds") { Description = "Heartbeat interval asked of agents", DefaultValueFactory = _ => 2 };
        var ldapUrl = new Option<string?>("--ldap-url") { Description = "LDAP directory for users who are not local, e.g. ldap://ldap.example.org:389" };
        var ldapBase = new Option<string?>("--ldap-base-dn") { Description = "Where users are searched, e.g. ou=people,dc=example,dc=org" };
        var ldapAttr = new Option<string>("--ldap-user-attribute") { Description = "Attribute holding the user name", DefaultValueFactory = _ => "uid" };
        var ldapBind = new Option<string?>("--ldap-bind-dn") { Description = "Service account for the user search (default: anonymous search)" };
        var ldapBindPassword = new Option<string?>("--ldap-bind-password-file") { Description = "File holding the service account's password" };
        var ldapAdmins = new Option<string?>("--ldap-admin-group") { Description = "Members of this group DN are Kumo admins" };
        var tlsCert = new Option<string>("--tls-cert") { Description = "Serve this certificate (PEM) instead of the one kumod makes in STATE/pki" };
        var tlsKey = new Option<string>("--tls-key") { Description = "Key of --tls-cert (PEM)" };
        var tlsCa = new Option<string>("--tls-ca") { Description = "CA that issued --tls-cert (PEM), published at /api/v1/ca for clients to pin" };
        var tlsSan = new Option<string[]>("--tls-san") { Description = "Extra host name or IP for the generated server certificate (repeatable)", AllowMultipleArgumentsPerToken = false };
        var insecureHttp = new Option<bool>("--insecure-http") { Description = "Serve the REST API as plain HTTP: development only (agents still use TLS)" };
        var devNoAaa = new Option<bool>("--dev-no-auth-no-audit")
        {
            Description = "DEVELOPMENT/BENCHMARK ONLY: the REST API (loopback only) serves everyone as admin, unaudited",
        };
        var debugPorts = new Option<string>("--debug-ports") { Description = "Ports for VMs' gdb stubs (kumo vm debug), FIRST-LAST", DefaultValueFactory = _ => "21000-21499" };
        var imageCache = new Option<string?>("--image-cache") { Description = "Where built base images (kumo image build-base) are cached, keyed by the build script (default STATE/images/.base-cache)" };
        var debianMirror = new Option<string?>("--debian-mirror") { Description = "Debian mirror base images are built from (default http://deb.debian.org/debian)" };
        var forwardRange = new Option<string>("--port-forward-range") { Description = "Node ports users may forward to their VMs (kumo port-forward), FIRST-LAST", DefaultValueFactory = _ => "2000-9999" };
        var debugBind = new Option<string>("--debug-bind") { Description = "Address the gdb stubs listen on, on each node", DefaultValueFactory = _ => "127.0.0.1" };
        var migrationPorts = new Option<string>("--migration-ports") { Description = "Ports target QEMUs listen on for live migrations (kumo vm migrate), FIRST-LAST", DefaultValueFactory = _ => "21500-21599" };
        var migrationHost = new Option<string>("--migration-host") { Description = "Address migration targets listen on and sources connect to (one for all nodes)", DefaultValueFactory = _ => "127.0.0.1" };
        var containerMemory = new Option<string>("--container-memory-default") { Description = "Memory limit of a container created without one", DefaultValueFactory = _ => "512M" };
        var buildContextMax = new Option<string>("--build-context-max") { Description = "Largest build context kumo ct build may upload", DefaultValueFactory = _ => "256M" };
        var portPool = new Option<string>("--container-port-pool") { Description = "Host ports published container ports get (on 127.0.0.1), FIRST-LAST", DefaultValueFactory = _ => "20000-29999" };
        var proxyListen = new Option<string>("--proxy-listen") { Description = "Reverse proxy for containers' published ports (plain HTTP), IP:PORT or 'off'", DefaultValueFactory = _ => "127.0.0.1:7480" };
        var proxyDomain = new Option<string>("--proxy-domain") { Description = "Containers are served at NAME.USER.DOMAIN and DOMAIN/u/USER/NAME/", DefaultValueFactory = _ => "localhost" };
        var insecureRegistry = new Option<string[]>("--insecure-registry")
        {
            Description = "Registry HOST[:PORT] that nodes may pull container images from over plain HTTP or unverified TLS (repeatable)",
            AllowMultipleArgumentsPerToken = false,
        };
        var agent = new AgentCommandLine();

        var root = new RootCommand("""
            kumod: the Kumo control plane (REST API, scheduler, agent gRPC).

            Examples:
              kumod --all-in-one                         # server + local agent, state in /var/lib/kumo
              kumod --state-dir /tmp/k --listen 127.0.0.1:7500 --agent-listen 127.0.0.1:7501
              kumod --listen 0.0.0.0:7400 --agent-listen 0.0.0.0:7401 --tls-san kumo.example.org

            The REST API is HTTPS with a CA kumod makes on first start (STATE/pki/ca.crt); the CLI pins it on
            first use. Agents use mutual TLS: a new machine joins with a token from `kumo node add-token`.
            """);
        foreach (var o in new Option[] { stateDir, listen, agentListen, allInOne, downAfter, heartbeat, ldapUrl, ldapBase, ldapAttr, ldapBind, ldapBindPassword, ldapAdmins,
            tlsCert, tlsKey, tlsCa, tlsSan, insecureHttp, devNoAaa, debugPorts, debugBind, migrationPorts, migrationHost, containerMemory, buildContextMax, portPool, insecureRegistry, proxyListen, proxyDomain, forwardRange, imageCache, debianMirror })
            root.Options.Add(o);
        agent.AddTo(root);

        root.SetAction(async (parse, ct) =>
        {
            var state = Path.GetFullPath(parse.GetValue(stateDir)
                ?? (Environment.GetEnvironmentVariable("KUMO_STATE_DIR") is { Length: > 0 } s ? s : "/var/lib/kumo"));
            if (!IPEndPoint.TryParse(parse.GetValue(listen)!, out var api) || !IPEndPoint.TryParse(parse.GetValue(agentListen)!, out var grpc))
            {
                await Console.Error.WriteLineAsync("error: --listen and --agent-listen take IP:PORT, e.g. 127.0.0.1:7400");
                return 1;
            }
            if (Kumo.Server.Debugging.DebugPortOptions.ParseRange(parse.GetValue(debugPorts)!) is not { } debugRange)
            {
                await Console.Error.WriteLineAsync("error: --debug-ports takes FIRST-LAST, e.g. 21000-21499");
                return 1;
            }
            if (Kumo.Server.Networking.PortForwardService.ParseRange(parse.GetValue(forwardRange)!) is not { } forwards)
            {
                await Console.Error.WriteLineAsync("error: --port-forward-range takes FIRST-LAST between 1024 and 65535, e.g. 2000-9999");
                return 1;
            }
            if (!IPAddress.TryParse(parse.GetValue(debugBind), out _))
            {
                await Console.Error.WriteLineAsync("error: --debug-bind takes an IP address, e.g. 127.0.0.1");
                return 1;
            }
            if (Kumo.Server.Debugging.DebugPortOptions.ParseRange(parse.GetValue(migrationPorts)!) is not { } migrationRange)
            {
                await Console.Error.WriteLineAsync("error: --migration-ports takes FIRST-LAST, e.g. 21500-21599");
                return 1;
            }
            if (!IPAddress.TryParse(parse.GetValue(migrationHost), out _))
            {
                await Console.Error.WriteLineAsync("error: --migration-host takes an IP address, e.g. 127.0.0.1");
                return 1;
            }
            Kumo.Server.Identity.Ldap.LdapOptions? ldap = null;
            if (parse.GetValue(ldapUrl) is { } url)
            {
                var passwordFile = parse.GetValue(ldapBindPassword);
                ldap = new Kumo.Server.Identity.Ldap.LdapOptions
                {
                    Url = url,
                    BaseDn = parse.GetValue(ldapBase) ?? "",
                    UserAttribute = parse.GetValue(ldapAttr)!,
                    BindDn = parse.GetValue(ldapBind),
                    BindPassword = passwordFile is null ? null : (await File.ReadAllTextAsync(passwordFile, ct)).Trim(),
                    AdminGroupDn = parse.GetValue(ldapAdmins),
                };
                try
                {
                    ldap.Validate();
                }
                catch (ArgumentException e)
                {
                    await Console.Error.WriteLineAsync($"error: LDAP settings: {e.Message}");
                    return 1;
                }
            }
            if (!Kumo.Core.ByteSize.TryParse(parse.GetValue(containerMemory), out var ctMemory, out var sizeError) || ctMemory < 16 * Kumo.Core.ByteSize.MiB)
            {
                await Console.Error.WriteLineAsync($"error: --container-memory-default: {sizeError ?? "at least 16M"}");
                return 1;
            }
            if (!Kumo.Core.ByteSize.TryParse(parse.GetValue(buildContextMax), out var contextMax, out var contextError) || contextMax < 1)
            {
                await Console.Error.WriteLineAsync($"error: --build-context-max: {contextError ?? "give a size, e.g. 256M"}");
                return 1;
            }
            var pool = parse.GetValue(portPool)!.Split('-');
            if (pool.Length != 2 || !int.TryParse(pool[0], out var poolFirst) || !int.TryParse(pool[1], out var poolLast)
                || poolFirst < 1024 || poolLast > 65535 || poolFirst > poolLast)
            {
                await Console.Error.WriteLineAsync("error: --container-port-pool takes FIRST-LAST between 1024 and 65535, e.g. 20000-29999");
                return 1;
            }
            IPEndPoint? proxy = null;
            if (parse.GetValue(proxyListen) is not "off" && (proxy = ParseEndpoint(parse.GetValue(proxyListen)!)) is null)
            {
                await Console.Error.WriteLineAsync("error: --proxy-listen takes IP:PORT (e.g. 127.0.0.1:7480) or off");
                return 1;
            }
            var domain = parse.GetValue(proxyDomain)!;
            if (Uri.CheckHostName(domain) != UriHostNameType.Dns)
            {
                await Console.Error.WriteLineAsync($"error: --proxy-domain '{domain}' is not a DNS name, e.g. localhost or apps.example.org");
                return 1;
            }
            var insecure = parse.GetValue(insecureRegistry) ?? [];
            if (insecure.FirstOrDefault(r => !Kumo.Core.RegistryReferences.ValidRegistry(r)) is { } badRegistry)
            {
                await Console.Error.WriteLineAsync($"error: --insecure-registry '{badRegistry}' is not HOST[:PORT], e.g. 127.0.0.1:5000");
                return 1;
            }
            var options = new KumoServerOptions
            {
                Proxy = new Kumo.Server.Proxy.ProxyOptions { Endpoint = proxy, Domain = domain.ToLowerInvariant() },
                Defaults = new Kumo.Server.Instances.InstanceDefaults
                {
                    ContainerMemoryBytes = ctMemory,
                    PortPoolFirst = poolFirst,
                    PortPoolLast = poolLast,
                    InsecureRegistries = insecure,
                },
                Ldap = ldap,
                StateDir = state,
                Images = new Kumo.Server.Images.ImageOptions
                {
                    BuildCacheDir = parse.GetValue(imageCache) is { } cache ? Path.GetFullPath(cache) : null,
                    DebianMirror = parse.GetValue(debianMirror),
                    MaxBuildContextBytes = contextMax,
                },
                Debug = new Kumo.Server.Debugging.DebugPortOptions { First = debugRange.First, Last = debugRange.Last, Bind = parse.GetValue(debugBind)! },
                PortForwards = new Kumo.Server.Networking.PortForwardOptions { First = forwards.First, Last = forwards.Last },
                Migration = new Kumo.Server.LiveMigration.MigrationOptions { First = migrationRange.First, Last = migrationRange.Last, Host = parse.GetValue(migrationHost)! },
                ApiEndpoint = api,
                AgentEndpoint = grpc,
                DevNoAuthNoAudit = parse.GetValue(devNoAaa),
                Health = new NodeHealthOptions
                {
                    DownAfter = TimeSpan.FromSeconds(parse.GetValue(downAfter)),
                    HeartbeatInterval = TimeSpan.FromSeconds(parse.GetValue(heartbeat)),
                },
                Tls = new TlsOptions
                {
                    InsecureHttp = parse.GetValue(insecureHttp),
                    CertificateFile = parse.GetValue(tlsCert),
                    KeyFile = parse.GetValue(tlsKey),
                    CaFile = parse.GetValue(tlsCa),
                    ExtraNames = parse.GetValue(tlsSan) ?? [],
                },
            };
            AgentOptions? agentOptions = null;
            if (parse.GetValue(allInOne))
            {
                var grpcUrl = new Uri($"https://{LocalAddress(grpc)}");
                var (bound, error) = agent.Bind(parse, Path.Combine(state, "agent"), grpcUrl, Path.Combine(state, "images"));
                if (bound is null)
                {
                    await Console.Error.WriteLineAsync($"error: {error}");
                    return 1;
                }
                agentOptions = bound;
            }
            WebApplication app;
            try
            {
                app = KumoServer.Build(options, b =>
                {
                    if (agentOptions is null) return;
                    b.Services.AddSingleton(services => agentOptions with
                    {
                        Reenroll = ct => LocalAgent.EnrollAsync(services.GetRequiredService<NodeCertificates>(), services.GetRequiredService<ServerPki>(), agentOptions, ct),
                    });
                    b.Services.AddHostedService<AgentService>();
                });
                if (agentOptions is not null)
                    await LocalAgent.EnsureEnrolledAsync(app.Services.GetRequiredService<NodeCertificates>(), app.Services.GetRequiredService<ServerPki>(), agentOptions, ct);
            }
            catch (Exception e) when (e is InvalidOperationException or InvalidDataException or IOException or System.Security.Cryptography.CryptographicException)
            {
                await Console.Error.WriteLineAsync($"error: {e.Message}");
                return 1;
            }
            await File.WriteAllTextAsync(Path.Combine(state, "kumod.pid"), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), ct);
            try
            {
                await app.StartAsync(ct);
            }
            catch (IOException e)
            {
                await Console.Error.WriteLineAsync($"error: cannot listen: {e.Message}");
                return 1;
            }
            await app.WaitForShutdownAsync(ct);
            return 0;
        });
        return root;
    }

    /// <summary>
    /// IP:PORT with both spelled out. IPEndPoint.TryParse alone takes "7480" as the address 0.0.29.80 with port 0, so
    /// the port must be there and the address must be written as one (dotted IPv4 or bracketed IPv6).
    /// </summary>
    private static IPEndPoint? ParseEndpoint(string text)
    {
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port > 65535)
            return null;
        var host = text[..colon];
        var bracketed = host.StartsWith('[') && host.EndsWith(']');
        if (!bracketed && host.Count(c => c == '.') != 3) return null;
        return IPAddress.TryParse(bracketed ? host[1..^1] : host, out var address) ? new IPEndPoint(address, port) : null;
    }

    /// <summary>Where the local agent dials: the agent endpoint, through loopback when it listens on every address.</summary>
    private static string LocalAddress(IPEndPoint grpc) => grpc.Address.Equals(IPAddress.Any)
        ? $"127.0.0.1:{grpc.Port}"
        : grpc.Address.Equals(IPAddress.IPv6Any) ? $"[::1]:{grpc.Port}" : grpc.ToString();
}
