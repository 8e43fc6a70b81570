using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo template add | list | show | rm: libvirt domain templates (admins add and remove; everyone reads).</summary>
internal static class TemplateCommands
{
    public static Command Create(CliContext cli)
    {
        var template = new Command("template", "libvirt domain templates for VMs made with kumo vm create --template");

        var name = new Argument<string>("NAME") { Description = "Template name (lowercase letters, digits and '-')" };
        var file = new Option<string>("--file", "-f") { Description = $"The domain XML, with {DomainTemplates.Name}, {DomainTemplates.Vcpu}, {DomainTemplates.MemoryKib} and {DomainTemplates.Image}", Required = true };
        var description = new Option<string?>("--description") { Description = "What the template is for" };
        var add = new Command("add", "Add a template (admins)") { name, file, description };
        cli.Examples(add, "kumo template add small --file small.xml --description '1 NIC, virtio disk'");
        cli.SetAction(add, async run =>
        {
            var path = run.Get(file);
            if (!File.Exists(path)) throw new UsageException($"--file: {path} does not exist");
            var added = await run.Client.AddTemplateAsync(new TemplatesPost
            {
                Name = Check.Name(run.Get(name), "template name"),
                Description = run.Get(description),
                Xml = await File.ReadAllTextAsync(path, run.Cancellation),
            }, run.Cancellation);
            run.Output.Write(added, t => Output.Line($"template {t.Name} added"));
            return KumoCli.Ok;
        });
        template.Subcommands.Add(add);

        var list = new Command("list", "List templates");
        cli.Examples(list, "kumo template list");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListTemplatesAsync(run.Cancellation), run.Output.Templates);
            return KumoCli.Ok;
        });
        template.Subcommands.Add(list);

        var showName = new Argument<string>("NAME") { Description = "Template name" };
        var show = new Command("show", "Print a template's domain XML") { showName };
        cli.Examples(show, "kumo template show small");
        cli.SetAction(show, async run =>
        {
            var t = await run.Client.GetTemplateAsync(Check.Name(run.Get(showName), "template name"), run.Cancellation);
            run.Output.Write(t, x => Output.Line(x.Xml.TrimEnd()));
            return KumoCli.Ok;
        });
        template.Subcommands.Add(show);

        var rmName = new Argument<string>("NAME") { Description = "Template name" };
        var rm = new Command("rm", "Remove a template (admins); VMs made from it keep their copy") { rmName };
        cli.Examples(rm, "kumo template rm small");
        cli.SetAction(rm, async run =>
        {
            var n = Check.Name(run.Get(rmName), "template name");
            await run.Client.DeleteTemplateAsync(n, run.Cancellation);
            run.Output.Write(new { name = n, deleted = true }, r => Output.Line($"template {r.name} removed"));
            return KumoCli.Ok;
        });
        template.Subcommands.Add(rm);
        return template;
    }
}
