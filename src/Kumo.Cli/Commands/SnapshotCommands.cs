using System.CommandLine;

namespace Kumo.Cli.Commands;

/// <summary>kumo vm snapshot NAME create|list|restore|delete [SNAP]: snapshots of a VM's root disk.</summary>
internal static class SnapshotCommands
{
    public static Command Create(CliContext cli)
    {
        var name = VmCommands.NameArgument();
        var action = new Argument<string>("ACTION") { Description = "create, list, restore or delete" };
        action.AcceptOnlyFromAmong("create", "list", "restore", "delete");
        var snapshot = new Argument<string?>("SNAP") { Description = "Snapshot name (not for list)", Arity = ArgumentArity.ZeroOrOne };
        var ram = new Option<bool>("--ram") { Description = "create: include RAM (the default for a running VM)" };
        var diskOnly = new Option<bool>("--disk-only") { Description = "create: the disk only, even for a running VM" };
        var noWait = VmCommands.NoWait();
        var command = new Command("snapshot", "Snapshot a VM's disk (and RAM), list, restore and delete snapshots")
        {
            name, action, snapshot, ram, diskOnly, noWait,
        };
        cli.Examples(command,
            "kumo vm snapshot web create before-lab",
            "kumo vm snapshot web create cold --disk-only",
            "kumo vm snapshot web list",
            "kumo vm snapshot web restore before-lab",
            "kumo vm snapshot web delete before-lab");
        cli.SetAction(command, async run =>
        {
            var vmName = Check.Name(run.Get(name), "vm name");
            var verb = run.Get(action);
            if (verb == "list")
            {
                if (run.Get(snapshot) is not null) throw new UsageException("list takes no snapshot name");
                var list = await run.Client.ListSnapshotsAsync(vmName, run.Cancellation);
                run.Output.Write(list, run.Output.Snapshots);
                return KumoCli.Ok;
            }
            var snapName = Check.Name(run.Get(snapshot) ?? throw new UsageException($"{verb} needs a snapshot name: kumo vm snapshot {vmName} {verb} SNAP"),
                "snapshot name");
            if (verb != "create" && (run.Get(ram) || run.Get(diskOnly)))
                throw new UsageException("--ram and --disk-only are for create");
            if (run.Get(ram) && run.Get(diskOnly)) throw new UsageException("--ram and --disk-only contradict each other");
            bool? memory = run.Get(ram) ? true : run.Get(diskOnly) ? false : null;
            var operation = verb switch
            {
                "create" => await run.Client.CreateSnapshotAsync(vmName, snapName, memory, run.Cancellation),
                "restore" => await run.Client.RestoreSnapshotAsync(vmName, snapName, run.Cancellation),
                _ => await run.Client.DeleteSnapshotAsync(vmName, snapName, run.Cancellation),
            };
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), final =>
            {
                run.Output.Write(final, o => Output.Line($"snapshot {snapName} of vm {vmName}: {o.Message}"));
                return Task.CompletedTask;
            });
        });
        return command;
    }
}
