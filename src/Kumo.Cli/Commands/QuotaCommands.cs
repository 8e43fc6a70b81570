using System.CommandLine;
using Kumo.Client;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo quota show | set: per-user and per-project limits, with current usage.</summary>
internal static class QuotaCommands
{
    public static Command Create(CliContext cli)
    {
        var quota = new Command("quota", "Limits on VMs, containers, vCPUs, memory and disk, per user and per project");

        var user = new Option<string?>("--user") { Description = "Show this user's quota (admin; default: yours)", HelpName = "USER" };
        var show = new Command("show", "Show limits and usage side by side (--project P for a project's)") { user };
        cli.Examples(show, "kumo quota show", "kumo quota show --user alice", "kumo quota show --project lab1");
        cli.SetAction(show, async run =>
        {
            var (scope, name) = Target(run, cli, run.Get(user), "--user");
            name ??= (await run.Client.WhoAmIAsync(run.Cancellation)).Name;
            run.Output.Write(await run.Client.GetQuotaAsync(scope, name, run.Cancellation), run.Output.Quota);
            return KumoCli.Ok;
        });
        quota.Subcommands.Add(show);

        var userArg = new Argument<string?>("USER") { Description = "User whose limits change (or --project P)", Arity = ArgumentArity.ZeroOrOne };
        var vms = new Option<int?>("--vms") { Description = "Most VMs", HelpName = "N" };
        var containers = new Option<int?>("--containers") { Description = "Most containers", HelpName = "N" };
        var vcpus = new Option<int?>("--vcpus") { Description = "Most virtual CPUs in total", HelpName = "N" };
        var memory = new Option<string?>("--memory") { Description = "Most memory in total, binary units: 8G", HelpName = "SIZE" };
        var disk = new Option<string?>("--disk") { Description = "Most disk in total, binary units: 100G", HelpName = "SIZE" };
        var set = new Command("set", "Change a user's or a project's limits (admin only); limits not given stay as they are")
        {
            userArg, vms, containers, vcpus, memory, disk,
        };
        cli.Examples(set,
            "kumo quota set alice --vms 4 --containers 8 --vcpus 8 --memory 8G --disk 100G",
            "kumo quota set --project lab1 --vms 20 --memory 32G");
        cli.SetAction(set, async run =>
        {
            var (scope, name) = Target(run, cli, run.Get(userArg), "USER");
            if (name is null)
                throw new UsageException("name the USER, or give --project P");
            var put = new QuotaPut
            {
                Vms = NotNegative(run.Get(vms), "--vms"),
                Containers = NotNegative(run.Get(containers), "--containers"),
                Vcpus = NotNegative(run.Get(vcpus), "--vcpus"),
                Memory = Check.Size(run.Get(memory), "--memory"),
                Disk = Check.Size(run.Get(disk), "--disk"),
            };
            if (put == new QuotaPut())
                throw new UsageException("nothing to change: give --vms, --containers, --vcpus, --memory or --disk");
            run.Output.Write(await run.Client.SetQuotaAsync(scope, name, put, run.Cancellation), run.Output.Quota);
            return KumoCli.Ok;
        });
        quota.Subcommands.Add(set);

        return quota;
    }

    /// <summary>
    /// The quota a command is about: a user, or the project named by the global --project flag itself (not
    /// KUMO_PROJECT or kumo project use, which choose where instances go, not whose quota to show).
    /// </summary>
    private static (string Scope, string? Name) Target(Invocation run, CliContext cli, string? userName, string userWhat)
    {
        var project = run.Parse.GetValue(cli.Project);
        if (project is not null && userName is not null)
            throw new UsageException($"give {userWhat} or --project, not both");
        return project is not null
            ? (KumoClient.ProjectScope, Check.Name(project, "project name"))
            : (KumoClient.UserScope, userName is null ? null : Check.Name(userName, "user name"));
    }

    private static int? NotNegative(int? value, string option) =>
        value is null or >= 0 ? value : throw new UsageException($"{option} must be 0 or more, not {value}");
}
