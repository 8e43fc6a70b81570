using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo network create | list | show | delete.</summary>
internal static class NetworkCommands
{
    public static Command Create(CliContext cli)
    {
        var network = new Command("network", "Create and manage tenant networks (DHCP, DNS, isolation, optional NAT)");

        var name = new Argument<string>("NAME") { Description = "Network name (lowercase letters, digits and '-')" };
        var subnet = new Option<string>("--subnet") { Description = "IPv4 subnet in CIDR form, /16 to /29: 10.42.0.0/24", Required = true };
        var nat = new Option<bool>("--nat") { Description = "Let guests reach the outside through the node (masquerade)" };
        var domain = new Option<string?>("--dns-domain") { Description = "DNS domain for guest names: lab.internal" };
        var create = new Command("create", "Create a network") { name, subnet, nat, domain };
        cli.Examples(create, "kumo network create lab-net --subnet 10.42.0.0/24", "kumo network create lab-net --subnet 10.42.0.0/24 --nat --dns-domain lab.internal");
        cli.SetAction(create, async run =>
        {
            var cidr = run.Get(subnet);
            if (!Cidr.TryParse(cidr, out _, out var error)) throw new UsageException($"--subnet: {error}");
            var created = await run.Client.CreateNetworkAsync(new NetworksPost
            {
                Name = Check.Name(run.Get(name), "network name"),
                Subnet = cidr,
                Nat = run.Get(nat) ? true : null,
                DnsDomain = run.Get(domain),
            }, run.Cancellation);
            run.Output.Write(created, Output.Network);
            return KumoCli.Ok;
        });
        network.Subcommands.Add(create);

        var list = new Command("list", "List networks of the project");
        cli.Examples(list, "kumo network list", "kumo network list -o json");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListNetworksAsync(run.Cancellation), run.Output.Networks);
            return KumoCli.Ok;
        });
        network.Subcommands.Add(list);

        var showName = new Argument<string>("NAME") { Description = "Network name" };
        var show = new Command("show", "Show a network and the addresses it handed out") { showName };
        cli.Examples(show, "kumo network show lab-net");
        cli.SetAction(show, async run =>
        {
            run.Output.Write(await run.Client.GetNetworkAsync(Check.Name(run.Get(showName), "network name"), run.Cancellation), Output.Network);
            return KumoCli.Ok;
        });
        network.Subcommands.Add(show);

        var deleteName = new Argument<string>("NAME") { Description = "Network name" };
        var delete = new Command("delete", "Delete a network (refused while VMs use it)") { deleteName };
        cli.Examples(delete, "kumo network delete lab-net");
        cli.SetAction(delete, async run =>
        {
            var n = Check.Name(run.Get(deleteName), "network name");
            await run.Client.DeleteNetworkAsync(n, run.Cancellation);
            run.Output.Write(new { name = n, deleted = true }, r => Output.Line($"network {r.name} deleted"));
            return KumoCli.Ok;
        });
        network.Subcommands.Add(delete);
        return network;
    }
}
