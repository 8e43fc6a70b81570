using System.CommandLine;
using System.Net;
using Kumo.Agent;
using Kumo.Server;
using Kumo.Server.Agents;
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
        var agent = new AgentCommandLine();

        var root = new RootCommand("""
            kumod: the Kumo control plane (REST API, scheduler, agent gRPC).

            Examples:
              kumod --all-in-one                         # server + local agent, state in /var/lib/kumo
              kumod --state-dir /tmp/k --listen 127.0.0.1:7500 --agent-listen 127.0.0.1:7501
            """);
        foreach (var o in new Option[] { stateDir, listen, agentListen, allInOne, downAfter, heartbeat, ldapUrl, ldapBase, ldapAttr, ldapBind, ldapBindPassword, ldapAdmins })
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
            var options = new KumoServerOptions
            {
                Ldap = ldap,
                StateDir = state,
                ApiEndpoint = api,
                AgentEndpoint = grpc,
                Health = new NodeHealthOptions
                {
                    DownAfter = TimeSpan.FromSeconds(parse.GetValue(downAfter)),
                    HeartbeatInterval = TimeSpan.FromSeconds(parse.GetValue(heartbeat)),
                },
            };
            AgentOptions? agentOptions = null;
            if (parse.GetValue(allInOne))
            {
                var grpcUrl = new Uri($"http://{(grpc.Address.Equals(IPAddress.Any) ? IPAddress.Loopback : grpc.Address)}:{grpc.Port}");
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
                    b.Services.AddSingleton(agentOptions);
                    b.Services.AddHostedService<AgentService>();
                });
            }
            catch (InvalidOperationException e)
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
}
