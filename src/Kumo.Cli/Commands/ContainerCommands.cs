using System.CommandLine;
using System.Globalization;
using Kumo.Client;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo ct run | list | show | stop | start | restart | rm | logs | exec | attach | build: containers, the second instance type.</summary>
internal static class ContainerCommands
{
    public static Command Create(CliContext cli)
    {
        var ct = new Command("ct", "Run and manage containers (engine name OWNER-NAME on the node)");
        ct.Subcommands.Add(RunCommand(cli));
        ct.Subcommands.Add(ListCommand(cli));
        ct.Subcommands.Add(ShowCommand(cli));
        ct.Subcommands.Add(Power(cli, "start", "Start a stopped container and wait until its process runs", (c, n, t) => c.StartInstanceAsync(n, t)));
        ct.Subcommands.Add(Power(cli, "stop", "Stop a container (SIGTERM, then SIGKILL after a grace period)", (c, n, t) => c.StopInstanceAsync(n, t)));
        ct.Subcommands.Add(Power(cli, "restart", "Stop and start a container", (c, n, t) => c.RestartInstanceAsync(n, t)));
        ct.Subcommands.Add(RemoveCommand(cli));
        ct.Subcommands.Add(ContainerSessionCommands.Logs(cli));
        ct.Subcommands.Add(ContainerSessionCommands.Exec(cli));
        ct.Subcommands.Add(ContainerSessionCommands.Attach(cli));
        ct.Subcommands.Add(ContainerBuildCommand.Create(cli));
        return ct;
    }

    private static Command RunCommand(CliContext cli)
    {
        var name = new Argument<string>("NAME") { Description = "Container name (lowercase letters, digits and '-')" };
        var command = new Argument<string[]>("COMMAND") { Description = "Command and arguments, after --", Arity = ArgumentArity.ZeroOrMore };
        var image = new Option<string>("--image") { Description = "Container image: a Kumo image (see kumo image list --type container) or HOST[:PORT]/PATH[:TAG] pulled from a registry", DefaultValueFactory = _ => "busybox" };
        var ports = new Option<string[]>("--publish", "-p") { Description = "Publish a container port on a host port from kumod's pool (repeatable)", HelpName = "PORT" };
        var memory = new Option<string?>("--memory", "-m") { Description = "Memory limit, binary units: 64M, 1G (default: kumod's, 512M)" };
        var cpus = new Option<string?>("--cpus") { Description = "CPU limit, may be fractional: 0.5 is half a CPU (counted as 1 vCPU against capacity and quota)" };
        var env = new Option<string[]>("--env", "-e") { Description = "Environment variable KEY=VALUE (repeatable)", HelpName = "KEY=VALUE" };
        var volumes = new Option<string[]>("--volume", "-v") { Description = "Bind mount SRC:DST[:ro], SRC inside ~/.kumo-data/USER/ on the node (repeatable)", HelpName = "SRC:DST" };
        var node = new Option<string?>("--node") { Description = "Place on this node instead of letting the scheduler choose" };
        var labels = new Option<string[]>("--label") { Description = "Label key=value (repeatable)", HelpName = "KEY=VALUE" };
        var interactive = new Option<bool>("--interactive", "-i") { Description = "Keep the process's stdin open, to type to it with kumo ct attach" };
        var tty = new Option<bool>("--tty", "-t") { Description = "Run the process on a terminal" };
        // Passed on so kumod can refuse them with its reason, rather than the CLI pretending they do not exist.
        var privileged = new Option<bool>("--privileged") { Description = "Refused by policy", Hidden = true };
        var network = new Option<string?>("--network") { Description = "Refused by policy unless default", Hidden = true };
        var pid = new Option<string?>("--pid") { Description = "Refused by policy", Hidden = true };
        var ipc = new Option<string?>("--ipc") { Description = "Refused by policy", Hidden = true };
        var devices = new Option<string[]>("--device") { Description = "Refused by policy", Hidden = true };
        var capAdd = new Option<string[]>("--cap-add") { Description = "Refused by policy", Hidden = true };
        var noWait = VmCommands.NoWait();
        var run = new Command("run", "Create and start a container, wait until its process runs")
        {
            name, command, image, ports, memory, cpus, env, volumes, node, labels, interactive, tty, privileged, network, pid, ipc, devices, capAdd, noWait,
        };
        cli.Examples(run,
            "kumo ct run web --image busybox -p 80 -m 256M -- httpd -f -p 80",
            "kumo ct run job -e MODE=batch -v data:/data -- sh -c 'date >> /data/log'",
            "kumo ct run app --image registry.example.org/team/app:1.0",
            "kumo ct run shell -i -- sh        # then: kumo ct attach shell");
        cli.SetAction(run, async r =>
        {
            var post = new InstancesPost
            {
                Name = Check.Name(r.Get(name), "container name"),
                Type = InstanceTypes.Container,
                Image = RegistryReferences.IsReference(r.Get(image))
                    ? (RegistryReferences.Validate(r.Get(image)!) is { } referenceError ? throw new UsageException(referenceError) : r.Get(image))
                    : Check.Name(r.Get(image), "image name"),
                Command = r.Get(command) is { Length: > 0 } c ? c : null,
                Ports = r.Get(ports) is { Length: > 0 } p ? p.Select(Port).ToList() : null,
                Memory = Check.Size(r.Get(memory), "--memory"),
                Cpus = CpuLimit(r.Get(cpus)) is { } whole && whole == Math.Floor(whole) ? (int)whole : null,
                CpuLimit = CpuLimit(r.Get(cpus)) is { } limit && limit != Math.Floor(limit) ? limit : null,
                Env = r.Get(env) is { Length: > 0 } e ? Check.Labels(e, "--env") : null,
                Volumes = r.Get(volumes) is { Length: > 0 } v ? v : null,
                Node = r.Get(node) is { } n ? Check.Name(n, "node name") : null,
                Labels = r.Get(labels) is { Length: > 0 } l ? Check.Labels(l, "--label") : null,
                Interactive = r.Get(interactive) ? true : null,
                Tty = r.Get(tty) ? true : null,
                Privileged = r.Get(privileged) ? true : null,
                Network = r.Get(network),
                Pid = r.Get(pid),
                Ipc = r.Get(ipc),
                Devices = r.Get(devices) is { Length: > 0 } d ? d : null,
                CapAdd = r.Get(capAdd) is { Length: > 0 } a ? a : null,
            };
            var operation = await r.Client.CreateInstanceAsync(post, r.Cancellation);
            return await OperationCommands.FinishAsync(r, operation, r.Get(noWait), _ => ShowResultAsync(r, post.Name));
        });
        return run;
    }

    private static double? CpuLimit(string? text) =>
        text is null ? null
        : double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var v) && v > 0 && double.IsFinite(v) ? v
        : throw new UsageException($"--cpus '{text}' is not a positive number of CPUs, e.g. 2 or 0.5");

    private static int Port(string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is >= 1 and <= 65535
            ? p
            : throw new UsageException($"-p '{text}' is not a container port (1-65535); the host port comes from kumod's pool");

    private static Command ListCommand(CliContext cli)
    {
        var state = new Option<string?>("--state") { Description = "Only containers in this state", HelpName = "STATE" };
        state.AcceptOnlyFromAmong([.. InstanceStates.All]);
        var list = new Command("list", "List your containers, stopped ones included") { state };
        cli.Examples(list, "kumo ct list", "kumo ct list --state running -o json");
        cli.SetAction(list, async run =>
        {
            var containers = await run.Client.ListInstancesAsync(run.Get(state), InstanceTypes.Container, run.Cancellation);
            run.Output.Write(containers, run.Output.Containers);
            return KumoCli.Ok;
        });
        return list;
    }

    private static Command ShowCommand(CliContext cli)
    {
        var name = NameArgument();
        var show = new Command("show", "Show one container") { name };
        cli.Examples(show, "kumo ct show web");
        cli.SetAction(show, async run =>
        {
            var instance = await GetAsync(run, run.Get(name));
            run.Output.Write(instance, Output.Container);
            return KumoCli.Ok;
        });
        return show;
    }

    private static Command Power(CliContext cli, string verb, string description, Func<KumoClient, string, CancellationToken, Task<Operation>> act)
    {
        var name = NameArgument();
        var noWait = VmCommands.NoWait();
        var command = new Command(verb, description) { name, noWait };
        cli.Examples(command, $"kumo ct {verb} web");
        cli.SetAction(command, async run =>
        {
            var ctName = (await GetAsync(run, run.Get(name))).Name;
            var operation = await act(run.Client, ctName, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), _ => ShowResultAsync(run, ctName));
        });
        return command;
    }

    private static Command RemoveCommand(CliContext cli)
    {
        var name = NameArgument();
        var force = new Option<bool>("--force", "-f") { Description = "Remove even if it is running (kills it first)" };
        var noWait = VmCommands.NoWait();
        var rm = new Command("rm", "Remove a container") { name, force, noWait };
        cli.Examples(rm, "kumo ct rm web", "kumo ct rm web --force");
        cli.SetAction(rm, async run =>
        {
            var ctName = (await GetAsync(run, run.Get(name))).Name;
            var operation = await run.Client.DeleteInstanceAsync(ctName, run.Get(force), run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), final =>
            {
                run.Output.Write(final, _ => Output.Line($"container {ctName} removed"));
                return Task.CompletedTask;
            });
        });
        return rm;
    }

    /// <summary>The container by name; a VM of that name is not a container, so it is reported as missing.</summary>
    public static async Task<Instance> GetAsync(Invocation run, string? name)
    {
        var checkedName = Check.Name(name, "container name");
        var instance = await run.Client.GetInstanceAsync(checkedName, run.Cancellation);
        return instance.Type == InstanceTypes.Container
            ? instance
            : throw new UsageException($"'{checkedName}' is a {instance.Type}, not a container (see: kumo {instance.Type} show {checkedName})");
    }

    private static async Task ShowResultAsync(Invocation run, string name)
    {
        var i = await run.Client.GetInstanceAsync(name, run.Cancellation);
        var urls = i.Container?.Ports.Select(p => $" http://{p.HostIp}:{p.HostPort.ToString(CultureInfo.InvariantCulture)}/ (port {p.ContainerPort.ToString(CultureInfo.InvariantCulture)})") ?? [];
        run.Output.Write(i, x => Output.Line($"container {x.Name} is {x.State}{(x.StatusMessage is { } m && x.State != InstanceStates.Running ? $" ({m})" : "")}"
            + (x.Node is null ? "" : $" on {x.Node}") + string.Concat(urls)
            + string.Concat((x.Urls ?? []).Select(u => $"\n  {u}"))));
    }

    public static Argument<string> NameArgument() => new("NAME") { Description = "Container name" };
}
