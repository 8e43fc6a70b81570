using System.CommandLine;

namespace Kumo.Cli.Commands;

/// <summary>kumo usage: allocated vCPU, memory and disk over time, per user and project.</summary>
internal static class UsageCommands
{
    public static Command Create(CliContext cli)
    {
        var user = new Option<string?>("--user") { Description = "Only this user's usage (admins; others always see their own)", HelpName = "USER" };
        var project = new Option<string?>("--project") { Description = "Only usage in this project", HelpName = "PROJECT" };
        var from = new Option<string?>("--from") { Description = "Start of the period, RFC 3339 or a date (default: 30 days before --to)", HelpName = "DATE" };
        var to = new Option<string?>("--to") { Description = "End of the period, RFC 3339 or a date (default: now)", HelpName = "DATE" };
        var usage = new Command("usage", "Show usage per user and project: allocated (vCPU-seconds, memory, disk) and measured CPU-seconds; -o csv for spreadsheets")
        {
            user, project, from, to,
        };
        cli.Examples(usage, "kumo usage", "kumo usage --user alice --from 2026-01-01 --to 2026-02-01 -o csv");
        cli.SetAction(usage, async run =>
        {
            var records = await run.Client.ListUsageAsync(run.Get(user), run.Get(project), run.Get(from), run.Get(to), run.Cancellation);
            if (run.Output.Format == OutputFormat.Csv)
                run.Output.WriteCsv(Output.UsageCsv(records));
            else
                run.Output.Write(records, run.Output.Usage);
            return KumoCli.Ok;
        });
        return usage;
    }
}
