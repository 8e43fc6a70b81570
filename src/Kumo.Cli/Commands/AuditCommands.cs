using System.CommandLine;

namespace Kumo.Cli.Commands;

/// <summary>kumo audit list | verify | export: the tamper-evident record of every API call.</summary>
internal static class AuditCommands
{
    public static Command Create(CliContext cli)
    {
        var audit = new Command("audit", "Read and check the audit log of every API call");

        var user = new Option<string?>("--user") { Description = "Only this user's calls (name or id)", HelpName = "USER" };
        var since = new Option<string?>("--since") { Description = "Only calls since a time (RFC 3339) or for a duration back (30m, 1h, 2d)", HelpName = "WHEN" };
        var limit = new Option<int?>("--limit") { Description = "At most this many entries, newest first (default 100)", HelpName = "N" };
        var list = new Command("list", "List recorded calls, newest first") { user, since, limit };
        cli.Examples(list, "kumo audit list --since 1h", "kumo audit list --user alice --limit 20 -o json");
        cli.SetAction(list, async run =>
        {
            var entries = await run.Client.ListAuditAsync(run.Get(user), Check.Since(run.Get(since), "--since"),
                Check.Positive(run.Get(limit), "--limit"), run.Cancellation);
            run.Output.Write(entries, run.Output.AuditEntries);
            return KumoCli.Ok;
        });
        audit.Subcommands.Add(list);

        var verify = new Command("verify", "Walk the hash chain and its signed checkpoint; exit 1 naming the first broken entry");
        cli.Examples(verify, "kumo audit verify");
        cli.SetAction(verify, async run =>
        {
            var result = await run.Client.VerifyAuditAsync(run.Cancellation);
            if (result.Ok)
            {
                run.Output.Write(result, v => Output.Line($"audit log intact: {v.Count} entries, the signed checkpoint vouches for {v.CheckpointCount ?? 0}"));
                return KumoCli.Ok;
            }
            if (run.Output.Format != OutputFormat.Table)
                run.Output.Write(result, _ => Output.Line(""));
            run.Output.Error(result.BrokenSeq is { } seq
                ? $"audit log broken at entry {seq}: {result.Reason}"
                : $"audit log broken: {result.Reason}");
            return KumoCli.Failed;
        });
        audit.Subcommands.Add(verify);

        var file = new Argument<string>("FILE") { Description = "Where to write the JSON lines (replaced if it exists)" };
        var export = new Command("export", "Save the whole audit log as JSON lines, oldest first") { file };
        cli.Examples(export, "kumo audit export audit-$(date +%F).jsonl");
        cli.SetAction(export, async run =>
        {
            var path = Path.GetFullPath(run.Get(file));
            var entries = await PrivateFile.WriteAsync(path, f => run.Client.ExportAuditAsync(f, run.Cancellation));
            run.Output.Write(new { file = path, entries }, r => Output.Line($"{r.entries} audit entries written to {r.file}"));
            return KumoCli.Ok;
        });
        audit.Subcommands.Add(export);

        return audit;
    }
}
