using System.CommandLine;
using Kumo.Client;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo vm start | stop | restart | destroy | delete: each returns an operation to follow.</summary>
internal static class VmPowerCommands
{
    public static IEnumerable<Command> Create(CliContext cli)
    {
        yield return Power(cli, "start", "Boot a stopped VM and wait until its guest is ready", (c, n, ct) => c.StartInstanceAsync(n, ct));
        yield return Power(cli, "stop", "Shut a VM down gracefully (forced after a timeout)", (c, n, ct) => c.StopInstanceAsync(n, ct));
        yield return Power(cli, "restart", "Stop and start a VM", (c, n, ct) => c.RestartInstanceAsync(n, ct));
        yield return Power(cli, "destroy", "Power a VM off at once, like pulling the plug (its disk stays)", (c, n, ct) => c.DestroyInstanceAsync(n, ct));
        yield return Delete(cli);
    }

    private static Command Power(CliContext cli, string verb, string description,
        Func<KumoClient, string, CancellationToken, Task<Operation>> act)
    {
        var name = VmCommands.NameArgument();
        var noWait = VmCommands.NoWait();
        var command = new Command(verb, description) { name, noWait };
        cli.Examples(command, $"kumo vm {verb} web", $"kumo vm {verb} web --no-wait");
        cli.SetAction(command, async run =>
        {
            var vmName = Check.Name(run.Get(name), "vm name");
            var operation = await act(run.Client, vmName, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), _ => VmCommands.ShowResultAsync(run, vmName));
        });
        return command;
    }

    private static Command Delete(CliContext cli)
    {
        var name = VmCommands.NameArgument();
        var force = new Option<bool>("--force") { Description = "Delete even if it is running (powers it off first)" };
        var noWait = VmCommands.NoWait();
        var delete = new Command("delete", "Delete a VM and its disk")
        {
            name, force, noWait,
        };
        cli.Examples(delete, "kumo vm delete web", "kumo vm delete web --force");
        cli.SetAction(delete, async run =>
        {
            var vmName = Check.Name(run.Get(name), "vm name");
            var operation = await run.Client.DeleteInstanceAsync(vmName, run.Get(force), run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), final =>
            {
                run.Output.Write(final, _ => Output.Line($"vm {vmName} deleted"));
                return Task.CompletedTask;
            });
        });
        return delete;
    }
}
