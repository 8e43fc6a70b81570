using System.CommandLine;
using Kumo.Agent;
using Kumo.Agent.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

var agent = new AgentCommandLine();
var stateDir = new Option<string>("--state-dir") { Description = "Agent state directory (default: $KUMO_STATE_DIR/agent or /var/lib/kumo/agent)" };
var server = new Option<string>("--server") { Description = "kumod agent endpoint", DefaultValueFactory = _ => "https://127.0.0.1:7401" };
var root = new RootCommand("""
    kumo-agent: runs guests on this machine for kumod.

    A new machine joins once with a token from `kumo node add-token`; its certificate is kept in STATE/pki:
      kumo-agent --server https://10.0.0.5:7401 --join-token TOKEN --ca-fingerprint SHA256 --node-name node2
    Later starts need no token:
      kumo-agent --server https://10.0.0.5:7401 --node-name node2 --state-dir /var/lib/kumo-node2 --capacity-cpus 2 --capacity-memory 2G
    """);
root.Options.Add(stateDir);
root.Options.Add(server);
agent.AddTo(root);
agent.AddJoinOptionsTo(root);
root.SetAction(async (parse, ct) =>
{
    var state = parse.GetValue(stateDir) ?? Path.Combine(Environment.GetEnvironmentVariable("KUMO_STATE_DIR") is { Length: > 0 } s ? s : "/var/lib/kumo", "agent");
    if (!Uri.TryCreate(parse.GetValue(server), UriKind.Absolute, out var url))
    {
        await Console.Error.WriteLineAsync("error: --server must be an absolute URL such as https://127.0.0.1:7401");
        return 1;
    }
    var (options, error) = agent.Bind(parse, state, url, null);
    var (join, joinError) = AgentCommandLine.BindJoin(parse, agent);
    if (options is null || joinError is not null)
    {
        await Console.Error.WriteLineAsync($"error: {error ?? joinError}");
        return 1;
    }
    options = options with { Join = join };
    var builder = Host.CreateApplicationBuilder();
    builder.Logging.ClearProviders();
    builder.Logging.AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.UseUtcTimestamp = true;
        o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
    });
    builder.Logging.AddFilter("Grpc", LogLevel.Warning);
    builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
    builder.Services.AddSingleton(options);
    builder.Services.AddSingleton<AgentEnrollment>();
    builder.Services.AddHostedService<AgentService>();
    using var host = builder.Build();
    if (!await host.Services.GetRequiredService<AgentEnrollment>().EnsureAsync(ct))
        return 1;
    await host.RunAsync(ct);
    return 0;
});
return await root.Parse(args).InvokeAsync();
