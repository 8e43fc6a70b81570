using System.CommandLine;

namespace Kumo.Cli.Commands;

/// <summary>kumo image list | show.</summary>
internal static class ImageCommands
{
    public static Command Create(CliContext cli)
    {
        var image = new Command("image", "Inspect the images instances boot from");

        var type = new Option<string?>("--type") { Description = "Only images of this type", HelpName = "TYPE" };
        type.AcceptOnlyFromAmong(Kumo.Core.InstanceTypes.Vm, Kumo.Core.InstanceTypes.Container);
        var list = new Command("list", "List images") { type };
        cli.Examples(list, "kumo image list", "kumo image list --type container");
        cli.SetAction(list, async run =>
        {
            var images = await run.Client.ListImagesAsync(run.Get(type), run.Cancellation);
            run.Output.Write(images, run.Output.Images);
            return KumoCli.Ok;
        });
        image.Subcommands.Add(list);

        var name = new Argument<string>("NAME") { Description = "Image name" };
        var show = new Command("show", "Show one image") { name };
        cli.Examples(show, "kumo image show tiny");
        cli.SetAction(show, async run =>
        {
            var found = await run.Client.GetImageAsync(Check.Name(run.Get(name), "image name"), run.Cancellation);
            run.Output.Write(found, Output.Image);
            return KumoCli.Ok;
        });
        image.Subcommands.Add(show);

        return image;
    }
}
