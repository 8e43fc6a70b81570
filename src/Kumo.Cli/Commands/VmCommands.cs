using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo vm create | list | show | set; power actions are in <see cref="VmPowerCommands"/>.</summary>
internal static class VmCommands
{
    public const string VmType = "vm";

    public static Command Create(CliContext cli)
    {
        var vm = new Command("vm", "Create and manage virtual machines");
        vm.Subcommands.Add(CreateCommand(cli));
        vm.Subcommands.Add(ListCommand(cli));
        vm.Subcommands.Add(ShowCommand(cli));
        vm.Subcommands.Add(SetCommand(cli));
        vm.Subcommands.Add(TopCommands.VmMetrics(cli));
        foreach (var command in VmPowerCommands.Create(cli))
            vm.Subcommands.Add(command);
        vm.Subcommands.Add(SnapshotCommands.Create(cli));
        vm.Subcommands.Add(VmConsoleCommand.Create(cli));
        vm.Subcommands.Add(VmDebugCommand.Create(cli));
        vm.Subcommands.Add(VmMigrateCommand.Create(cli));
        return vm;
    }

    private static Command CreateCommand(CliContext cli)
    {
        var name = new Argument<string>("NAME") { Description = "VM name (lowercase letters, digits and '-')" };
        var image = new Option<string>("--image") { Description = "Image to boot (see kumo image list)", DefaultValueFactory = _ => "tiny" };
        var cpus = new Option<int?>("--cpus") { Description = "Virtual CPUs" };
        var memory = new Option<string?>("--memory") { Description = "Memory, binary units: 256M, 2G" };
        var disk = new Option<string?>("--disk") { Description = "Disk size, binary units: 1G, 20G" };
        var node = new Option<string?>("--node") { Description = "Place on this node instead of letting the scheduler choose" };
        var stopped = new Option<bool>("--stopped") { Description = "Create without booting" };
        var labels = new Option<string[]>("--label") { Description = "Label key=value (repeatable)", HelpName = "KEY=VALUE" };
        var description = new Option<string?>("--description") { Description = "Free text shown by kumo vm show" };
        var network = new Option<string?>("--network") { Description = "Attach to this network of the project (see kumo network list)" };
        var sshKeys = new Option<string[]>("--ssh-key")
        {
            Description = "OpenSSH public key file the guest's user authorizes, through cloud-init (repeatable; images with cloud-init, e.g. debian)",
            HelpName = "FILE",
        };
        var passwordFile = new Option<string?>("--password-file")
        {
            Description = "File whose first line is the guest user's password (- reads stdin); kumod keeps only its hash",
            HelpName = "FILE",
        };
        var template = new Option<string?>("--template") { Description = "Make it from this libvirt domain template (see kumo template list); it runs through libvirtd" };
        var set = new Option<string[]>("--set")
        {
            Description = "With --template: ask to change something the template fixes (network, disk.bus, disk.format); kumod refuses it",
            HelpName = "KEY=VALUE",
        };
        var noWait = NoWait();
        var start = new Option<string?>("--start") { Description = "Reserve the VM from this time: local 2026-12-01T09:00, UTC with Z, or +DURATION from now (+10m)" };
        var end = new Option<string?>("--end") { Description = "Reservation end, same forms as --start; at the end the VM is stopped and deleted" };
        var create = new Command("create", "Create a VM and wait until its guest is ready, or reserve it for a time window (--start/--end)")
        {
            name, image, cpus, memory, disk, node, stopped, labels, description, network, sshKeys, passwordFile, start, end, template, set, noWait,
        };
        cli.Examples(create,
            "kumo vm create web --image tiny --cpus 1 --memory 256M",
            "kumo vm create db --image tiny --cpus 2 --memory 1G --disk 10G --node node-1",
            "kumo vm create later --image tiny --memory 256M --stopped --no-wait",
            "kumo vm create a --network lab-net",
            "kumo vm create d1 --image debian --memory 512M --ssh-key ~/.ssh/id_ed25519.pub",
            "kumo vm create exam --memory 512M --start 2026-12-01T09:00 --end 2026-12-01T12:00",
            "kumo vm create x --template small --cpus 1 --memory 256M --image tiny");
        cli.SetAction(create, async run =>
        {
            var now = DateTimeOffset.UtcNow;
            var from = run.Get(start) is { } st ? ClusterCommands.When(st, "--start", now) : (DateTimeOffset?)null;
            var to = run.Get(end) is { } en ? ClusterCommands.When(en, "--end", now) : (DateTimeOffset?)null;
            if (from is not null && to is null) throw new UsageException("--start needs --end: a reservation is a window");
            if (to is not null && run.Get(stopped)) throw new UsageException("--stopped cannot be combined with a reservation: the VM starts when its window opens");
            var post = new InstancesPost
            {
                Name = Check.Name(run.Get(name), "vm name"),
                Type = VmType,
                Image = Check.Name(run.Get(image), "image name"),
                Cpus = Check.Positive(run.Get(cpus), "--cpus"),
                Memory = Check.Size(run.Get(memory), "--memory"),
                Disk = Check.Size(run.Get(disk), "--disk"),
                Node = run.Get(node) is { } n ? Check.Name(n, "node name") : null,
                Stopped = run.Get(stopped) ? true : null,
                Labels = run.Get(labels) is { Length: > 0 } l ? Check.Labels(l, "--label") : null,
                Description = run.Get(description),
                Network = run.Get(network) is { } net ? Check.Name(net, "network name") : null,
                SshKeys = run.Get(sshKeys) is { Length: > 0 } keys ? ReadKeys(keys) : null,
                Password = run.Get(passwordFile) is { } pw ? ReadPassword(pw) : null,
                Start = from,
                End = to,
                Template = run.Get(template) is { } t ? Check.Name(t, "template name") : null,
                TemplateOverrides = run.Get(set) is { Length: > 0 } s ? Check.Labels(s, "--set") : null,
            };
            var operation = await run.Client.CreateInstanceAsync(post, run.Cancellation);
            // A window that opens later: the operation is already done and there is no VM to show yet.
            if (to is not null && operation.Status == OperationStatuses.Succeeded && operation.Kind == "reserve")
            {
                run.Output.Write(await run.Client.GetReservationAsync(post.Name, run.Cancellation), Output.Reservation);
                return KumoCli.Ok;
            }
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), _ => ShowResultAsync(run, post.Name));
        });
        return create;
    }

    /// <summary>The keys in the given files (kumod checks each one's form); a missing file is a usage error.</summary>
    private static List<string> ReadKeys(string[] files)
    {
        var keys = new List<string>();
        foreach (var f in files)
        {
            var path = f.StartsWith("~/", StringComparison.Ordinal)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), f[2..])
                : f;
            if (!File.Exists(path)) throw new UsageException($"--ssh-key {f}: no such file (give the public key file, e.g. ~/.ssh/id_ed25519.pub)");
            keys.AddRange(File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')));
        }
        return keys;
    }

    private static string ReadPassword(string file)
    {
        string? line;
        if (file == "-") line = Console.In.ReadLine();
        else if (File.Exists(file)) line = File.ReadLines(file).FirstOrDefault();
        else throw new UsageException($"--password-file {file}: no such file");
        return line ?? throw new UsageException($"--password-file {file} is empty");
    }

    private static Command ListCommand(CliContext cli)
    {
        var running = new Option<bool>("--running") { Description = "Only running VMs (same as --state running)" };
        var state = new Option<string?>("--state") { Description = "Only VMs in this state", HelpName = "STATE" };
        state.AcceptOnlyFromAmong([.. InstanceStates.All]);
        var list = new Command("list", "List VMs") { running, state };
        cli.Examples(list, "kumo vm list", "kumo vm list --running -o json");
        cli.SetAction(list, async run =>
        {
            var filter = run.Get(state);
            if (run.Get(running))
            {
                if (filter is not null && filter != InstanceStates.Running)
                    throw new UsageException($"--running and --state {filter} contradict each other");
                filter = InstanceStates.Running;
            }
            var instances = await run.Client.ListInstancesAsync(filter, VmType, run.Cancellation);
            // Say which project only when one was chosen; the personal project is the quiet default.
            var project = run.Client.Project;
            run.Output.Write(instances, list => project is null
                ? run.Output.Instances(list)
                : new Spectre.Console.Rows(run.Output.Instances(list), new Spectre.Console.Text($"project: {project}")));
            return KumoCli.Ok;
        });
        return list;
    }

    private static Command ShowCommand(CliContext cli)
    {
        var name = NameArgument();
        var show = new Command("show", "Show one VM") { name };
        cli.Examples(show, "kumo vm show web");
        cli.SetAction(show, async run =>
        {
            var instance = await run.Client.GetInstanceAsync(Check.Name(run.Get(name), "vm name"), run.Cancellation);
            run.Output.Write(instance, Output.Instance);
            return KumoCli.Ok;
        });
        return show;
    }

    private static Command SetCommand(CliContext cli)
    {
        var name = NameArgument();
        var description = new Option<string?>("--description") { Description = "New description (\"\" clears it)" };
        var labels = new Option<string[]>("--label") { Description = "Add or change a label key=value (repeatable)", HelpName = "KEY=VALUE" };
        var unset = new Option<string[]>("--remove-label") { Description = "Remove a label (repeatable)", HelpName = "KEY" };
        var set = new Command("set", "Change a VM's description and labels (read, then write with If-Match)")
        {
            name, description, labels, unset,
        };
        cli.Examples(set, "kumo vm set web --description \"front end\" --label tier=web", "kumo vm set web --remove-label tier");
        cli.SetAction(set, async run =>
        {
            var vmName = Check.Name(run.Get(name), "vm name");
            var newDescription = run.Get(description);
            var add = Check.Labels(run.Get(labels), "--label");
            var remove = run.Get(unset) ?? [];
            if (newDescription is null && add.Count == 0 && remove.Length == 0)
                throw new UsageException("nothing to change: give --description, --label or --remove-label");

            // Read-modify-write under the ETag, so a concurrent change is refused (412) instead of lost.
            var current = await run.Client.GetInstanceWithETagAsync(vmName, run.Cancellation);
            var merged = new Dictionary<string, string>(current.Instance.Labels, StringComparer.Ordinal);
            foreach (var key in remove)
                merged.Remove(key);
            foreach (var (key, value) in add)
                merged[key] = value;
            var put = new InstancePut { Labels = merged, Description = newDescription ?? current.Instance.Description };
            var updated = await run.Client.PutInstanceAsync(vmName, put, current.ETag, run.Cancellation);
            run.Output.Write(updated, Output.Instance);
            return KumoCli.Ok;
        });
        return set;
    }

    /// <summary>After a successful operation: the VM as it now is, as one line or in full for JSON/YAML.</summary>
    public static async Task ShowResultAsync(Invocation run, string name)
    {
        var instance = await run.Client.GetInstanceAsync(name, run.Cancellation);
        run.Output.Write(instance, i => Output.Line(i.Node is null ? $"vm {i.Name} is {i.State}" : $"vm {i.Name} is {i.State} on {i.Node}"));
    }

    public static Argument<string> NameArgument() => new("NAME") { Description = "VM name" };

    public static Option<bool> NoWait() => new("--no-wait") { Description = "Return once kumod accepted the request; print the operation" };
}
