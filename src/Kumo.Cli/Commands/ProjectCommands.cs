using System.CommandLine;
using Kumo.Cli.Configuration;

namespace Kumo.Cli.Commands;

/// <summary>kumo project create | list | add-member | remove-member | use.</summary>
internal static class ProjectCommands
{
    public static Command Create(CliContext cli)
    {
        var project = new Command("project", "Projects group instances; everyone has a personal one, admins create shared ones");

        var createName = NameArgument();
        var create = new Command("create", "Create a shared project, with you as its first member (admin only)") { createName };
        cli.Examples(create, "kumo project create lab1");
        cli.SetAction(create, async run =>
        {
            var created = await run.Client.CreateProjectAsync(Check.Name(run.Get(createName), "project name"), run.Cancellation);
            run.Output.Write(created, p => Output.Line($"project {p.Name} created"));
            return KumoCli.Ok;
        });
        project.Subcommands.Add(create);

        var list = new Command("list", "List the projects you belong to (all of them, for an admin)");
        cli.Examples(list, "kumo project list");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListProjectsAsync(run.Cancellation), run.Output.Projects);
            return KumoCli.Ok;
        });
        project.Subcommands.Add(list);

        project.Subcommands.Add(Member(cli, "add-member", "Add a user to a shared project (admin only)", add: true));
        project.Subcommands.Add(Member(cli, "remove-member", "Remove a user from a shared project (admin only)", add: false));
        project.Subcommands.Add(Use(cli));
        return project;
    }

    private static Command Member(CliContext cli, string verb, string description, bool add)
    {
        var projectName = NameArgument();
        var userName = new Argument<string>("USER") { Description = "User name" };
        var command = new Command(verb, description) { projectName, userName };
        cli.Examples(command, $"kumo project {verb} lab1 alice");
        cli.SetAction(command, async run =>
        {
            var p = Check.Name(run.Get(projectName), "project name");
            var u = Check.Name(run.Get(userName), "user name");
            var changed = add
                ? await run.Client.AddProjectMemberAsync(p, u, run.Cancellation)
                : await run.Client.RemoveProjectMemberAsync(p, u, run.Cancellation);
            run.Output.Write(changed, x => Output.Line($"{u} {(add ? "added to" : "removed from")} project {x.Name} (members: {string.Join(", ", x.Members)})"));
            return KumoCli.Ok;
        });
        return command;
    }

    private static Command Use(CliContext cli)
    {
        var name = new Argument<string?>("NAME") { Description = "Project to act in from now on", Arity = ArgumentArity.ZeroOrOne };
        var clear = new Option<bool>("--clear") { Description = "Forget the choice: act in your personal project again" };
        var use = new Command("use", "Remember the project later commands act in (project= in ~/.config/kumo/config)") { name, clear };
        cli.Examples(use, "kumo project use lab1", "kumo project use --clear");
        cli.SetAction(use, async run =>
        {
            var config = run.Environment.ConfigPath;
            var chosen = run.Get(name);
            if (run.Get(clear) == (chosen is not null))
                throw new UsageException("give a project NAME or --clear");
            if (chosen is null)
            {
                CliConfig.Remove(config, "project");
                run.Output.Write(new { project = (string?)null, file = config }, _ => Output.Line("no project chosen: commands act in your personal project"));
            }
            else
            {
                var projectName = Check.Name(chosen, "project name");
                // Refuse a typo now rather than on every later command.
                if (!(await run.Client.ListProjectsAsync(run.Cancellation)).Any(p => p.Name == projectName))
                    throw new UsageException($"project '{projectName}' does not exist or you are not a member (see: kumo project list)");
                CliConfig.Set(config, "project", projectName);
                run.Output.Write(new { project = projectName, file = config }, r => Output.Line($"now acting in project {r.project} (saved in {r.file})"));
            }
            if (!string.IsNullOrWhiteSpace(run.Environment.GetVariable(CliConfig.ProjectVariable)))
                run.Environment.Error.WriteLine($"note: {CliConfig.ProjectVariable} is set and takes precedence");
            return KumoCli.Ok;
        });
        return use;
    }

    private static Argument<string> NameArgument() => new("NAME") { Description = "Project name" };
}
