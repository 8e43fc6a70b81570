using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo operation show | wait, and how every command that starts an operation finishes.</summary>
internal static class OperationCommands
{
    public static Command Create(CliContext cli)
    {
        var operation = new Command("operation", "Follow long-running actions (create, start, stop, ...)");

        var showId = new Argument<string>("ID") { Description = "Operation id" };
        var show = new Command("show", "Show an operation's status") { showId };
        cli.Examples(show, "kumo operation show 01J9Z8Q4M3K2");
        cli.SetAction(show, async run =>
        {
            var found = await run.Client.GetOperationAsync(Check.OperationId(run.Get(showId)), run.Cancellation);
            run.Output.Write(found, Output.Operation);
            return KumoCli.Ok;
        });
        operation.Subcommands.Add(show);

        var waitId = new Argument<string>("ID") { Description = "Operation id" };
        var wait = new Command("wait", "Show an operation's progress until it ends; exit 1 if it failed")
        {
            waitId,
        };
        cli.Examples(wait, "kumo operation wait 01J9Z8Q4M3K2");
        cli.SetAction(wait, async run =>
        {
            var started = await run.Client.GetOperationAsync(Check.OperationId(run.Get(waitId)), run.Cancellation);
            return await FinishAsync(run, started, noWait: false, final =>
            {
                run.Output.Write(final, Output.Operation);
                return Task.CompletedTask;
            });
        });
        operation.Subcommands.Add(wait);

        return operation;
    }

    /// <summary>
    /// With --no-wait prints the accepted operation; otherwise shows progress until it ends, then runs
    /// <paramref name="onSuccess"/>, or prints why it failed and returns exit code 1.
    /// </summary>
    public static async Task<int> FinishAsync(Invocation run, Operation operation, bool noWait, Func<Operation, Task> onSuccess)
    {
        if (noWait)
        {
            run.Output.Write(operation, o => Output.Line($"operation {o.Id} accepted: {o.Kind} {o.Target} (follow it: kumo operation wait {o.Id})"));
            return KumoCli.Ok;
        }
        Operation final;
        try
        {
            final = await run.Output.FollowAsync(run.Client, operation, run.Cancellation);
        }
        catch (OperationCanceledException) when (run.Cancellation.IsCancellationRequested)
        {
            run.Output.Error($"interrupted; operation {operation.Id} goes on (follow it: kumo operation wait {operation.Id})");
            return KumoCli.Interrupted;
        }
        if (final.Status == OperationStatuses.Failed)
        {
            run.Output.Error($"{final.Kind} {final.Target} failed: {final.Error ?? final.Message ?? "kumod gave no reason"}");
            return KumoCli.Failed;
        }
        await onSuccess(final);
        return KumoCli.Ok;
    }
}
