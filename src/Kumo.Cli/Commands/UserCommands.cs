using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo user add | list | show | disable | enable | delete (admins).</summary>
internal static class UserCommands
{
    public static Command Create(CliContext cli)
    {
        var user = new Command("user", "Manage user accounts (admin only)");
        user.Subcommands.Add(Add(cli));

        var list = new Command("list", "List users");
        cli.Examples(list, "kumo user list");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListUsersAsync(run.Cancellation), run.Output.Users);
            return KumoCli.Ok;
        });
        user.Subcommands.Add(list);

        var showName = NameArgument();
        var show = new Command("show", "Show one user") { showName };
        cli.Examples(show, "kumo user show alice");
        cli.SetAction(show, async run =>
        {
            run.Output.Write(await run.Client.GetUserAsync(Check.Name(run.Get(showName), "user name"), run.Cancellation), Output.User);
            return KumoCli.Ok;
        });
        user.Subcommands.Add(show);

        user.Subcommands.Add(Toggle(cli, "disable", "Stop a user from logging in; their sessions and tokens stop working at once", disable: true));
        user.Subcommands.Add(Toggle(cli, "enable", "Let a disabled user log in again", disable: false));
        user.Subcommands.Add(Delete(cli));
        return user;
    }

    private static Command Add(CliContext cli)
    {
        var name = NameArgument();
        var role = new Option<string>("--role") { Description = "Role", HelpName = "user|admin", DefaultValueFactory = _ => "user" }
            .AcceptOnlyFromAmong("user", "admin");
        var passwordStdin = new Option<bool>("--password-stdin") { Description = "Read the password from stdin; otherwise kumod generates one and it is printed once" };
        var add = new Command("add", "Create a local user and its personal project") { name, role, passwordStdin };
        cli.Examples(add,
            "kumo user add alice",
            "kumo user add bob --role admin",
            "printf '%s\\n' \"$PASSWORD\" | kumo user add carol --password-stdin");
        cli.SetAction(add, async run =>
        {
            var post = new UsersPost
            {
                Name = Check.Name(run.Get(name), "user name"),
                Role = run.Get(role),
                Password = run.Get(passwordStdin) ? Terminal.ReadLine(run.Environment, "the password") : null,
            };
            var created = await run.Client.CreateUserAsync(post, run.Cancellation);
            var heading = $"user {created.User.Name} created (role {created.User.Role})";
            run.Output.Write(created, c => c.Password is null ? Output.Line(heading) : Output.Secret(heading, "password", c.Password));
            return KumoCli.Ok;
        });
        return add;
    }

    private static Command Toggle(CliContext cli, string verb, string description, bool disable)
    {
        var name = NameArgument();
        var command = new Command(verb, description) { name };
        cli.Examples(command, $"kumo user {verb} alice");
        cli.SetAction(command, async run =>
        {
            var userName = Check.Name(run.Get(name), "user name");
            var changed = disable
                ? await run.Client.DisableUserAsync(userName, run.Cancellation)
                : await run.Client.EnableUserAsync(userName, run.Cancellation);
            run.Output.Write(changed, u => Output.Line($"user {u.Name} is {(u.Disabled ? "disabled" : "enabled")}"));
            return KumoCli.Ok;
        });
        return command;
    }

    private static Command Delete(CliContext cli)
    {
        var name = NameArgument();
        var deleteResources = new Option<bool>("--delete-resources") { Description = "Also delete everything the user owns: clusters, reservations, instances" };
        var reassignTo = new Option<string?>("--reassign-to") { Description = "Give the user's instances, clusters and reservations to this user instead", HelpName = "USER" };
        var delete = new Command("delete", "Delete a user; instances they own must be deleted or reassigned, never orphaned")
        {
            name, deleteResources, reassignTo,
        };
        cli.Examples(delete, "kumo user delete alice", "kumo user delete alice --delete-resources", "kumo user delete alice --reassign-to bob");
        cli.SetAction(delete, async run =>
        {
            var userName = Check.Name(run.Get(name), "user name");
            var to = run.Get(reassignTo) is { } t ? Check.Name(t, "--reassign-to user") : null;
            if (to is not null && run.Get(deleteResources))
                throw new UsageException("--delete-resources and --reassign-to exclude each other");
            var resources = to is not null ? "reassign" : run.Get(deleteResources) ? "delete" : null;
            await run.Client.DeleteUserAsync(userName, resources, to, run.Cancellation);
            var what = resources switch
            {
                "reassign" => $"; their instances now belong to {to}",
                "delete" => " with their instances",
                _ => "",
            };
            run.Output.Write(new { user = userName, deleted = true, resources, to }, _ => Output.Line($"user {userName} deleted{what}"));
            return KumoCli.Ok;
        });
        return delete;
    }

    private static Argument<string> NameArgument() => new("NAME") { Description = "User name" };
}
