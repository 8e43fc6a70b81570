using System.CommandLine;
using Kumo.Agent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

var agent = new AgentCommandLine();
var stateDir = new Option<string>("--state-dir") { Description = "Agent state directory (default: $KUMO_STATE_DIR/agent or /var/lib/kumo/agent)" };
var server = new Option<string>("--server") { Description = "kumod agent endpoint", DefaultValueFactory = _ => "http://127.0.0.1:7401" };
var root = new RootCommand("kumo-agent: runs guests on this machine for kumod.\n\nExample: kumo-agent --node-name node2 --state-dir /var/lib/kumo-node2 --capacity-cpus 2 --capacity-memory 2G");
root.Options.Add(stateDir);
root.Options.Add(server);
agent.AddTo(root);
root.SetAction(async (parse, ct) =>
{
    var state = parse.GetValue(stateDir) ?? Path.Combine(Environment.GetEnvironmentVariable("KUMO_STATE_DIR") is { Length: > 0 } s ? s : "/var/lib/kumo", "agent");
    if (!Uri.TryCreate(parse.GetValue(server), UriKind.Absolute, out var url))
    {
        await Console.Error.WriteLineAsync("error: --server must be an absolute URL such as http://127.0.0.1:7401");
        return 1;
    }
    var (options, error) = agent.Bind(parse, state, url, null);
    if (options is null)
    {
        await Console.Error.WriteLineAsync($"error: {error}");
        return 1;
    }
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
    builder.Services.AddHostedService<AgentService>();
    await builder.Build().RunAsync(ct);
    return 0;
});
return await root.Parse(args).InvokeAsync();
