using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo volume create | list | show | attach | detach | resize | delete.</summary>
internal static class VolumeCommands
{
    public static Command Create(CliContext cli)
    {
        var volume = new Command("volume", "Extra disks for VMs: create, attach, detach, resize, delete");
        volume.Subcommands.Add(CreateCommand(cli));
        volume.Subcommands.Add(ListCommand(cli));
        volume.Subcommands.Add(ShowCommand(cli));
        volume.Subcommands.Add(AttachCommand(cli, "attach", "Attach a volume to a VM (hot-plugged if it runs)"));
        volume.Subcommands.Add(AttachCommand(cli, "detach", "Detach a volume from a VM (hot-unplugged if it runs)"));
        volume.Subcommands.Add(ResizeCommand(cli));
        volume.Subcommands.Add(DeleteCommand(cli));
        return volume;
    }

    private static Argument<string> NameArgument() => new("NAME") { Description = "Volume name" };

    private static Command CreateCommand(CliContext cli)
    {
        var name = NameArgument();
        var size = new Option<string>("--size") { Description = "Size, binary units: 512M, 2G", Required = true };
        var create = new Command("create", "Create a volume (its file is made on the node of the first VM it is attached to)") { name, size };
        cli.Examples(create, "kumo volume create data1 --size 2G");
        cli.SetAction(create, async run =>
        {
            var post = new VolumesPost { Name = Check.Name(run.Get(name), "volume name"), Size = Check.Size(run.Get(size), "--size") };
            var created = await run.Client.CreateVolumeAsync(post, run.Cancellation);
            run.Output.Write(created, v => Output.Line($"volume {v.Name} created ({Output.Size(v.SizeBytes)})"));
            return KumoCli.Ok;
        });
        return create;
    }

    private static Command ListCommand(CliContext cli)
    {
        var list = new Command("list", "List volumes");
        cli.Examples(list, "kumo volume list", "kumo volume list -o json");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListVolumesAsync(run.Cancellation), run.Output.Volumes);
            return KumoCli.Ok;
        });
        return list;
    }

    private static Command ShowCommand(CliContext cli)
    {
        var name = NameArgument();
        var show = new Command("show", "Show one volume") { name };
        cli.Examples(show, "kumo volume show data1");
        cli.SetAction(show, async run =>
        {
            var v = await run.Client.GetVolumeAsync(Check.Name(run.Get(name), "volume name"), run.Cancellation);
            run.Output.Write(v, x => Output.Details(("Name", x.Name), ("Size", Output.Size(x.SizeBytes)), ("State", x.State),
                ("Attached to", x.AttachedTo), ("Node", x.Node), ("Project", x.Project), ("Created", Output.Time(x.CreatedAt)), ("Id", x.Id)));
            return KumoCli.Ok;
        });
        return show;
    }

    private static Command AttachCommand(CliContext cli, string verb, string description)
    {
        var name = NameArgument();
        var vm = new Argument<string>("VM") { Description = "The VM" };
        var noWait = VmCommands.NoWait();
        var command = new Command(verb, description) { name, vm, noWait };
        cli.Examples(command, $"kumo volume {verb} data1 web");
        cli.SetAction(command, async run =>
        {
            var volumeName = Check.Name(run.Get(name), "volume name");
            var vmName = Check.Name(run.Get(vm), "vm name");
            var operation = verb == "attach"
                ? await run.Client.AttachVolumeAsync(volumeName, vmName, run.Cancellation)
                : await run.Client.DetachVolumeAsync(volumeName, vmName, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), final =>
            {
                run.Output.Write(final, _ => Output.Line($"volume {volumeName} {verb}ed {(verb == "attach" ? "to" : "from")} {vmName}"));
                return Task.CompletedTask;
            });
        });
        return command;
    }

    private static Command ResizeCommand(CliContext cli)
    {
        var name = NameArgument();
        var size = new Option<string>("--size") { Description = "New size (volumes only grow)", Required = true };
        var noWait = VmCommands.NoWait();
        var resize = new Command("resize", "Grow a volume (a VM it is attached to sees the new size at once)") { name, size, noWait };
        cli.Examples(resize, "kumo volume resize data1 --size 4G");
        cli.SetAction(resize, async run =>
        {
            var volumeName = Check.Name(run.Get(name), "volume name");
            var operation = await run.Client.ResizeVolumeAsync(volumeName, Check.Size(run.Get(size), "--size")!, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), final =>
            {
                run.Output.Write(final, o => Output.Line($"volume {volumeName}: {o.Message}"));
                return Task.CompletedTask;
            });
        });
        return resize;
    }

    private static Command DeleteCommand(CliContext cli)
    {
        var name = NameArgument();
        var noWait = VmCommands.NoWait();
        var delete = new Command("delete", "Delete a volume and its data (refused while it is attached)") { name, noWait };
        cli.Examples(delete, "kumo volume delete data1");
        cli.SetAction(delete, async run =>
        {
            var volumeName = Check.Name(run.Get(name), "volume name");
            var operation = await run.Client.DeleteVolumeAsync(volumeName, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), final =>
            {
                run.Output.Write(final, _ => Output.Line($"volume {volumeName} deleted"));
                return Task.CompletedTask;
            });
        });
        return delete;
    }
}
