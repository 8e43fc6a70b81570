using System.CommandLine;
using Spectre.Console;

namespace Kumo.Cli.Commands;

/// <summary>kumo top: nodes and guests with their CPU, memory, disk and network, refreshed live.</summary>
internal static class TopCommands
{
    public static Command Create(CliContext cli)
    {
        var once = new Option<bool>("--once") { Description = "Print one snapshot and exit (scripts, tests)" };
        var interval = new Option<double>("--interval") { Description = "Seconds between refreshes", DefaultValueFactory = _ => 2, HelpName = "SECONDS" };
        var top = new Command("top", "Live table of nodes and instances: CPU, memory, disk, network and state") { once, interval };
        cli.Examples(top, "kumo top", "kumo top --once", "kumo top --once -o json");
        cli.SetAction(top, async run =>
        {
            var seconds = run.Get(interval);
            if (seconds is < 0.5 or > 3600) throw new UsageException("--interval must be between 0.5 and 3600 seconds");
            var every = TimeSpan.FromSeconds(seconds);
            if (run.Get(once))
            {
                run.Output.Write(await run.Client.GetMetricsSummaryAsync(run.Cancellation), run.Output.Top);
                return KumoCli.Ok;
            }
            if (run.Output.Format != OutputFormat.Table || !run.Environment.IsInteractive)
            {
                // Not a terminal (or JSON/YAML): one snapshot after another, until interrupted.
                while (true)
                {
                    run.Output.Write(await run.Client.GetMetricsSummaryAsync(run.Cancellation), run.Output.Top);
                    await Task.Delay(every, run.Cancellation);
                }
            }
            var first = await run.Client.GetMetricsSummaryAsync(run.Cancellation);
            await run.Output.Console.Live(run.Output.Top(first)).StartAsync(async live =>
            {
                while (true)
                {
                    await Task.Delay(every, run.Cancellation);
                    live.UpdateTarget(run.Output.Top(await run.Client.GetMetricsSummaryAsync(run.Cancellation)));
                }
            });
            return KumoCli.Ok;
        });
        return top;
    }

    /// <summary>kumo vm metrics NAME: the recent samples kumod keeps of one VM.</summary>
    public static Command VmMetrics(CliContext cli)
    {
        var name = new Argument<string>("NAME") { Description = "VM name" };
        var metrics = new Command("metrics", "Show a VM's recent CPU, memory, disk and network samples (kept by kumod for 15 minutes)") { name };
        cli.Examples(metrics, "kumo vm metrics web", "kumo vm metrics web -o json");
        cli.SetAction(metrics, async run =>
        {
            var m = await run.Client.GetInstanceMetricsAsync(Check.Name(run.Get(name), "vm name"), run.Cancellation);
            run.Output.Write(m, run.Output.InstanceMetrics);
            return KumoCli.Ok;
        });
        return metrics;
    }
}
