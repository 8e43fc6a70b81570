using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo port-forward add | list | rm: node ports DNATed to a VM on a tenant network.</summary>
internal static class PortForwardCommands
{
    public static Command Create(CliContext cli)
    {
        var forward = new Command("port-forward", "Forward ports of the node to a VM on a tenant network (NAT from the node's addresses)");

        var name = new Argument<string>("VM") { Description = "The VM (it must be on a tenant network: kumo vm create --network)" };
        var to = new Option<int>("--to") { Description = "The VM's port", Required = true };
        var pub = new Option<int?>("--public") { Description = "The node's port (default: a free one from the admin's range)" };
        var udp = new Option<bool>("--udp") { Description = "Forward UDP instead of TCP" };
        var add = new Command("add", "Forward a node port to a VM's port") { name, pub, to, udp };
        cli.Examples(add, "kumo port-forward add web --public 2222 --to 22", "kumo port-forward add web --to 80");
        cli.SetAction(add, async run =>
        {
            var port = run.Get(to);
            if (port is < 1 or > 65535) throw new UsageException($"--to: {port} is not a port (1-65535)");
            if (run.Get(pub) is { } p && p is < 1 or > 65535) throw new UsageException($"--public: {p} is not a port (1-65535)");
            var created = await run.Client.AddPortForwardAsync(Check.Name(run.Get(name), "VM name"), new PortForwardsPost
            {
                Port = port,
                PublicPort = run.Get(pub),
                Protocol = run.Get(udp) ? PortProtocols.Udp : PortProtocols.Tcp,
            }, run.Cancellation);
            run.Output.Write(created, Output.PortForwardLine);
            return KumoCli.Ok;
        });
        forward.Subcommands.Add(add);

        var listName = new Argument<string?>("VM") { Description = "Only this VM's forwards", Arity = ArgumentArity.ZeroOrOne };
        var list = new Command("list", "List port forwards of the project (or of one VM)") { listName };
        cli.Examples(list, "kumo port-forward list", "kumo port-forward list web -o json");
        cli.SetAction(list, async run =>
        {
            var vm = run.Get(listName);
            var forwards = vm is null
                ? await run.Client.ListPortForwardsAsync(run.Cancellation)
                : await run.Client.ListPortForwardsAsync(Check.Name(vm, "VM name"), run.Cancellation);
            run.Output.Write(forwards, run.Output.PortForwards);
            return KumoCli.Ok;
        });
        forward.Subcommands.Add(list);

        var rmName = new Argument<string>("VM") { Description = "The VM" };
        var rmPub = new Option<int>("--public") { Description = "The node port to stop forwarding", Required = true };
        var rmUdp = new Option<bool>("--udp") { Description = "The forward is UDP" };
        var rm = new Command("rm", "Stop forwarding a node port") { rmName, rmPub, rmUdp };
        rm.Aliases.Add("remove");
        cli.Examples(rm, "kumo port-forward rm web --public 2222");
        cli.SetAction(rm, async run =>
        {
            var vm = Check.Name(run.Get(rmName), "VM name");
            var port = run.Get(rmPub);
            var protocol = run.Get(rmUdp) ? PortProtocols.Udp : PortProtocols.Tcp;
            await run.Client.RemovePortForwardAsync(vm, port, protocol, run.Cancellation);
            run.Output.Write(new { instance = vm, publicPort = port, protocol, removed = true },
                r => Output.Line($"{r.instance}: node port {r.publicPort}/{r.protocol} no longer forwarded"));
            return KumoCli.Ok;
        });
        forward.Subcommands.Add(rm);
        return forward;
    }
}
