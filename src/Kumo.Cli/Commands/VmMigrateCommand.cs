using System.CommandLine;

namespace Kumo.Cli.Commands;

/// <summary>kumo vm migrate NAME --to NODE: live migration; the progress lines show the bytes sent.</summary>
internal static class VmMigrateCommand
{
    public static Command Create(CliContext cli)
    {
        var name = VmCommands.NameArgument();
        var to = new Option<string>("--to") { Description = "The node to move the VM to", HelpName = "NODE", Required = true };
        var noWait = VmCommands.NoWait();
        var command = new Command("migrate", "Move a running VM to another node without stopping it (admins)") { name, to, noWait };
        cli.Examples(command, "kumo vm migrate web --to node2", "kumo vm migrate web --to node2 --no-wait");
        cli.SetAction(command, async run =>
        {
            var vmName = Check.Name(run.Get(name), "vm name");
            var node = Check.Name(run.Get(to), "node name");
            var operation = await run.Client.MigrateInstanceAsync(vmName, node, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), final =>
            {
                run.Output.Write(final, o => Output.Line(o.Message ?? $"vm {vmName} migrated to {node}"));
                return Task.CompletedTask;
            });
        });
        return command;
    }
}
