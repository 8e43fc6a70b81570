using System.CommandLine;

namespace Kumo.Cli.Commands;

/// <summary>kumo node list | show | drain | undrain | remove | add-token.</summary>
internal static class NodeCommands
{
    public static Command Create(CliContext cli)
    {
        var node = new Command("node", "Inspect and maintain the machines that run instances");

        var list = new Command("list", "List nodes with their capacity and load");
        cli.Examples(list, "kumo node list");
        cli.SetAction(list, async run =>
        {
            var nodes = await run.Client.ListNodesAsync(run.Cancellation);
            run.Output.Write(nodes, run.Output.Nodes);
            return KumoCli.Ok;
        });
        node.Subcommands.Add(list);

        var showName = NameArgument();
        var show = new Command("show", "Show one node") { showName };
        cli.Examples(show, "kumo node show node-1");
        cli.SetAction(show, async run =>
        {
            var found = await run.Client.GetNodeAsync(Check.Name(run.Get(showName), "node name"), run.Cancellation);
            run.Output.Write(found, Output.Node);
            return KumoCli.Ok;
        });
        node.Subcommands.Add(show);

        var drainName = NameArgument();
        var drain = new Command("drain", "Stop placing new instances on a node (running ones stay)") { drainName };
        cli.Examples(drain, "kumo node drain node-1");
        cli.SetAction(drain, async run =>
        {
            var changed = await run.Client.DrainNodeAsync(Check.Name(run.Get(drainName), "node name"), run.Cancellation);
            run.Output.Write(changed, n => Output.Line($"node {n.Name} is {n.State}"));
            return KumoCli.Ok;
        });
        node.Subcommands.Add(drain);

        var undrainName = NameArgument();
        var undrain = new Command("undrain", "Let the scheduler place instances on a node again") { undrainName };
        cli.Examples(undrain, "kumo node undrain node-1");
        cli.SetAction(undrain, async run =>
        {
            var changed = await run.Client.UndrainNodeAsync(Check.Name(run.Get(undrainName), "node name"), run.Cancellation);
            run.Output.Write(changed, n => Output.Line($"node {n.Name} is {n.State}"));
            return KumoCli.Ok;
        });
        node.Subcommands.Add(undrain);

        var removeName = NameArgument();
        var force = new Option<bool>("--force") { Description = "Remove even though instances are still assigned to it" };
        var remove = new Command("remove", "Forget a node and revoke its certificate (its agent must join again)")
        {
            removeName,
            force,
        };
        cli.Examples(remove, "kumo node remove node-2", "kumo node remove node-2 --force");
        cli.SetAction(remove, async run =>
        {
            var name = Check.Name(run.Get(removeName), "node name");
            await run.Client.RemoveNodeAsync(name, run.Get(force), run.Cancellation);
            run.Output.Write(new { name, removed = true }, r => Output.Line($"node {r.name} removed"));
            return KumoCli.Ok;
        });
        node.Subcommands.Add(remove);

        var ttl = new Option<string>("--ttl") { Description = "How long the token can be used: 30m, 1h, 2d (at most 7d)", DefaultValueFactory = _ => "1h" };
        var addToken = new Command("add-token", "Make a one-time token with which a new machine's kumo-agent joins") { ttl };
        cli.Examples(addToken, "kumo node add-token", "kumo node add-token --ttl 30m -o json");
        cli.SetAction(addToken, async run =>
        {
            var lifetime = run.Get(ttl);
            if (!Core.Durations.TryParse(lifetime, out _, out var error))
                throw new UsageException($"--ttl: {error}");
            var token = await run.Client.CreateNodeTokenAsync(lifetime, run.Cancellation);
            var agentUrl = new UriBuilder(run.Client.BaseAddress) { Scheme = Uri.UriSchemeHttps, Port = 7401, Path = "" }.Uri.GetLeftPart(UriPartial.Authority);
            run.Output.Write(token, t => new Spectre.Console.Rows(
                Output.Details(("Token", t.Token), ("Expires", Output.Time(t.ExpiresAt) + " (usable once)"), ("CA fingerprint", t.CaFingerprint)),
                Output.Line($"\nOn the new machine:\n  kumo-agent --server {agentUrl} --join-token {t.Token} --ca-fingerprint {t.CaFingerprint} --node-name NAME")));
            return KumoCli.Ok;
        });
        node.Subcommands.Add(addToken);

        return node;
    }

    private static Argument<string> NameArgument() => new("NAME") { Description = "Node name" };
}
