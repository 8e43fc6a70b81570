using System.CommandLine;
using Kumo.Client;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo image list | show | import | export | rm.</summary>
internal static class ImageCommands
{
    public static Command Create(CliContext cli)
    {
        var image = new Command("image", "Import, export and inspect the images instances boot from");

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

        image.Subcommands.Add(BuildBaseCommand(cli));
        image.Subcommands.Add(ImportCommand(cli));
        image.Subcommands.Add(ExportCommand(cli));
        image.Subcommands.Add(RemoveCommand(cli));
        return image;
    }

    private static Command BuildBaseCommand(CliContext cli)
    {
        var distro = new Argument<string>("DISTRO") { Description = "The distribution: debian (Debian 12, from the Debian mirror)" };
        var type = new Option<string>("--type")
        {
            Description = "vm: a bootable disk with cloud-init (takes minutes, cached); container: a rootfs each node imports on first use",
            HelpName = "TYPE",
            DefaultValueFactory = _ => Kumo.Core.InstanceTypes.Vm,
        };
        var noWait = VmCommands.NoWait();
        var build = new Command("build-base", "Build a base image from a distribution's package mirror (admins)") { distro, type, noWait };
        cli.Examples(build,
            "kumo image build-base debian --type vm",
            "kumo image build-base debian --type container");
        cli.SetAction(build, async run =>
        {
            // kumod judges the distribution and type (it knows what it can build); its refusal is the one line printed.
            var (name, kind) = (run.Get(distro), run.Get(type));
            var operation = await run.Client.BuildBaseImageAsync(new ImagesBuildBasePost { Distro = name, Type = kind }, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), async _ =>
                run.Output.Write((await run.Client.ListImagesAsync(kind, run.Cancellation)).First(i => i.Name == name), Output.Image));
        });
        return build;
    }

    private static Command ImportCommand(CliContext cli)
    {
        var file = new Argument<string>("FILE") { Description = "Disk or archive: qcow2, raw, VMDK, VHD, VHDX, Vagrant .box or OVA (detected from its content)" };
        var name = new Option<string?>("--name") { Description = "Image name (default: the file name without its extensions)" };
        var readiness = new Option<string?>("--readiness")
        {
            Description = "When a guest of this image counts as ready: none (once running, the default), timeout (after a delay), marker (it signals Kumo's readiness port)",
            HelpName = "MODE",
        };
        readiness.AcceptOnlyFromAmong("none", "timeout", "marker");
        var description = new Option<string?>("--description") { Description = "Free text shown by kumo image show" };
        var noWait = VmCommands.NoWait();
        var import = new Command("import", "Upload a disk image, convert it to qcow2 and check it") { file, name, readiness, description, noWait };
        cli.Examples(import,
            "kumo image import ./focal.box --name focal",
            "kumo image import ./appliance.ova",
            "kumo image import ./disk.vmdk --name lab --readiness timeout");
        cli.SetAction(import, async run =>
        {
            var path = run.Get(file);
            if (Directory.Exists(path)) throw new UsageException($"{path} is a directory; give the disk or archive file");
            if (!File.Exists(path)) throw new UsageException($"{path}: no such file");
            var imageName = Check.Name(run.Get(name) ?? DefaultName(path), "image name");
            await using var source = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous | FileOptions.SequentialScan);
            Operation? operation = null;
            await run.Output.TransferAsync($"uploading {Path.GetFileName(path)}", source.Length, async progress =>
                operation = await run.Client.ImportImageAsync(source,
                    new ImageImport(imageName, "vm", run.Get(readiness), run.Get(description)), progress, run.Cancellation));
            return await OperationCommands.FinishAsync(run, operation!, run.Get(noWait), async _ =>
                run.Output.Write(await run.Client.GetImageAsync(imageName, run.Cancellation), Output.Image));
        });
        return import;
    }

    private static Command ExportCommand(CliContext cli)
    {
        var name = new Argument<string>("NAME") { Description = "Image name" };
        var file = new Argument<string>("FILE") { Description = "Where to write the disk (refused if it exists, unless --force)" };
        var format = new Option<string?>("--format")
        {
            Description = "qcow2, raw or vmdk (default: from FILE's extension, else qcow2)",
            HelpName = "FORMAT",
        };
        format.AcceptOnlyFromAmong("qcow2", "raw", "vmdk");
        var force = new Option<bool>("--force") { Description = "Overwrite FILE if it exists" };
        var export = new Command("export", "Download an image's disk") { name, file, format, force };
        cli.Examples(export, "kumo image export mybox ./mybox.qcow2", "kumo image export mybox ./mybox.vmdk");
        cli.SetAction(export, async run =>
        {
            var imageName = Check.Name(run.Get(name), "image name");
            var path = run.Get(file);
            var chosen = run.Get(format) ?? FormatOf(path);
            if (Directory.Exists(path)) throw new UsageException($"{path} is a directory; give a file name");
            if (File.Exists(path) && !run.Get(force)) throw new UsageException($"{path} exists; pass --force to overwrite it");
            // Written under a temporary name: an interrupted download never looks like a complete image.
            var partial = path + ".part";
            try
            {
                await using (var destination = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, FileOptions.Asynchronous))
                {
                    // Only the stored qcow2 has a size known up front; a converted export shows bytes so far.
                    var known = chosen == "qcow2" ? (await run.Client.GetImageAsync(imageName, run.Cancellation)).SizeBytes : null;
                    await run.Output.TransferAsync($"downloading {imageName} ({chosen})", known, progress =>
                        run.Client.ExportImageAsync(imageName, chosen, destination, new Output.SyncProgress<(long Done, long? Total)>(p => progress.Report(p.Done)), run.Cancellation));
                }
                File.Move(partial, path, overwrite: true);
            }
            finally
            {
                File.Delete(partial);
            }
            run.Output.Write(new { image = imageName, file = Path.GetFullPath(path), format = chosen, bytes = new FileInfo(path).Length },
                o => Output.Line($"exported {o.image} to {o.file} ({chosen}, {Output.Size(o.bytes)})"));
            return KumoCli.Ok;
        });
        return export;
    }

    private static Command RemoveCommand(CliContext cli)
    {
        var name = new Argument<string>("NAME") { Description = "Image name" };
        var type = new Option<string?>("--type") { Description = "Only an image of this type (a vm and a container image may share a name)", HelpName = "TYPE" };
        type.AcceptOnlyFromAmong(Kumo.Core.InstanceTypes.Vm, Kumo.Core.InstanceTypes.Container);
        var rm = new Command("rm", "Remove an image (refused for built-in images and while instances use it; a built container image also leaves its node)") { name, type };
        rm.Aliases.Add("delete");
        cli.Examples(rm, "kumo image rm mybox", "kumo image rm myapp --type container");
        cli.SetAction(rm, async run =>
        {
            var imageName = Check.Name(run.Get(name), "image name");
            await run.Client.DeleteImageAsync(imageName, run.Get(type), run.Cancellation);
            run.Output.Write(new { image = imageName, removed = true }, o => Output.Line($"image {o.image} removed"));
            return KumoCli.Ok;
        });
        return rm;
    }

    /// <summary>"focal.box" → focal, "Disk_1.vmdk.gz" → disk-1: a valid name a user would have chosen.</summary>
    internal static string DefaultName(string path)
    {
        var stem = Path.GetFileName(path);
        var dot = stem.IndexOf('.', StringComparison.Ordinal);
        if (dot > 0) stem = stem[..dot];
        var chars = stem.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray();
        return new string(chars).Trim('-');
    }

    private static string FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".raw" or ".img" => "raw",
        ".vmdk" => "vmdk",
        _ => "qcow2",
    };
}
