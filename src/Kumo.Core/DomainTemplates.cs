using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace Kumo.Core;

/// <summary>An admin-owned libvirt domain XML template (kumo template add NAME --file domain.xml).</summary>
public sealed record DomainTemplate
{
    public required string Name { get; init; }
    public string? Description { get; init; }

    /// <summary>The domain XML with the placeholders of <see cref="DomainTemplates"/>.</summary>
    public required string Xml { get; init; }

    public string? CreatedBy { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

public sealed record TemplatesPost
{
    public string? Name { get; init; }
    public string? Description { get; init; }
    public string? Xml { get; init; }
}

/// <summary>
/// Checks and fills libvirt domain templates. A template fixes everything about the machine (network, disk bus and
/// format, devices); users choose only the four things its placeholders stand for. Kumo adds what it owns itself when
/// it renders: the instance label in &lt;metadata&gt;, the kernel of images that boot one, the serial console and the
/// readiness channel. A template that sets any of those is refused on add, so the rendered domain is always Kumo's.
/// </summary>
public static class DomainTemplates
{
    public const string Name = "{{name}}";
    public const string Vcpu = "{{vcpu}}";
    public const string MemoryKib = "{{memory_kib}}";
    public const string Image = "{{image}}";

    /// <summary>What users may set on a templated VM besides the template itself; everything else is the template's.</summary>
    public static readonly IReadOnlyList<string> UserFields = ["name", "cpus", "memory", "image"];

    /// <summary>The XML namespace of Kumo's label in a domain's &lt;metadata&gt;.</summary>
    public const string MetadataNamespace = "https://kumo.dev/xmlns/libvirt/1";

    public const int MaxLength = 64 * 1024;

    /// <summary>Every reason the template is refused (empty: it is fine).</summary>
    public static IReadOnlyList<string> Validate(string? xml)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(xml)) return ["the template is empty; send a libvirt domain XML document"];
        if (xml.Length > MaxLength) return [$"the template is longer than {MaxLength / 1024} KiB"];
        XDocument doc;
        try
        {
            doc = Parse(xml);
        }
        catch (XmlException e)
        {
            return [$"not well-formed XML: {e.Message}"];
        }
        var domain = doc.Root!;
        if (domain.Name != "domain") return [$"the root element must be <domain>, not <{domain.Name}>"];
        var type = (string?)domain.Attribute("type");
        if (type is not ("qemu" or "kvm")) errors.Add($"<domain type='{type}'>: the type must be 'qemu' (TCG) or 'kvm'");

        RequireText(domain, "name", Name, errors);
        RequireText(domain, "vcpu", Vcpu, errors);
        var memory = RequireText(domain, "memory", MemoryKib, errors);
        if (memory is not null && (string?)memory.Attribute("unit") is { } unit && unit != "KiB")
            errors.Add($"<memory unit='{unit}'>: the unit must be KiB (or left out), {MemoryKib} is in KiB");
        if (domain.Element("currentMemory") is { } current && current.Value.Trim() != MemoryKib)
            errors.Add($"<currentMemory> must be {MemoryKib} too, or left out");

        foreach (var owned in new[] { "uuid", "metadata" })
        {
            if (domain.Element(owned) is not null) errors.Add($"<{owned}> is set by Kumo; remove it from the template");
        }
        if (domain.Element("os") is not { } os)
            errors.Add("<os> is missing; e.g. <os><type arch='x86_64' machine='q35'>hvm</type></os>");
        else
        {
            foreach (var boot in new[] { "kernel", "initrd", "cmdline" })
            {
                if (os.Element(boot) is not null) errors.Add($"<os><{boot}> is set by Kumo from the image; remove it from the template");
            }
        }

        if (domain.Element("devices") is not { } devices)
        {
            errors.Add("<devices> is missing; it must hold the image's <disk>");
        }
        else
        {
            var disks = devices.Elements("disk").ToList();
            var imageDisks = disks.Where(d => (string?)d.Element("source")?.Attribute("file") == Image).ToList();
            if (imageDisks.Count != 1)
                errors.Add($"exactly one <disk> must have <source file='{Image}'/>, found {imageDisks.Count}");
            if (disks.Count != imageDisks.Count)
                errors.Add($"the only disk is the image's ({Image}); volumes are attached by Kumo");
            foreach (var disk in imageDisks)
            {
                if ((string?)disk.Attribute("type") != "file" || ((string?)disk.Attribute("device") ?? "disk") != "disk")
                    errors.Add("the image's <disk> must be type='file' device='disk'");
                if ((string?)disk.Element("driver")?.Attribute("type") != "qcow2")
                    errors.Add("the image's <disk> needs <driver name='qemu' type='qcow2'/>: Kumo gives every VM a qcow2 overlay");
                if ((string?)disk.Element("target")?.Attribute("bus") is not ("virtio" or "sata" or "scsi" or "ide"))
                    errors.Add("the image's <disk> needs <target dev='...' bus='virtio|sata|scsi|ide'/>: the template fixes the bus");
                if (disk.Element("backingStore") is not null)
                    errors.Add("the image's <disk> must not name a <backingStore>; Kumo makes the overlay");
            }
            foreach (var owned in new[] { "serial", "console" })
            {
                if (devices.Element(owned) is not null) errors.Add($"<{owned}> is set by Kumo (kumo vm console); remove it from the template");
            }
            if (devices.Elements("channel").Any(c => (string?)c.Element("target")?.Attribute("name") == "kumo.ready"))
                errors.Add("the kumo.ready channel is set by Kumo; remove it from the template");
        }

        // Placeholders count only where they are checked above: anywhere else they would let a user's value reach
        // a part of the machine the template is meant to fix.
        var placed = new[] { Name, Vcpu, MemoryKib, Image };
        foreach (var text in doc.DescendantNodes().OfType<XText>().Select(t => t.Value)
                     .Concat(doc.Descendants().SelectMany(e => e.Attributes()).Select(a => a.Value)))
        {
            var at = 0;
            while ((at = text.IndexOf("{{", at, StringComparison.Ordinal)) >= 0)
            {
                var end = text.IndexOf("}}", at, StringComparison.Ordinal);
                var found = end < 0 ? text[at..] : text[at..(end + 2)];
                if (!placed.Contains(found))
                    errors.Add($"unknown placeholder {found}; only {string.Join(", ", placed)} exist");
                at += 2;
            }
        }
        var counts = placed.ToDictionary(p => p, p => CountOf(xml, p));
        foreach (var (p, n) in counts.Where(c => c.Key != MemoryKib && c.Value > 1))
            errors.Add($"{p} appears {n} times; it may appear only once");
        return errors.Distinct().ToList();
    }

    /// <summary>What Kumo adds to a domain when it renders a template (paths on the node).</summary>
    public sealed record RenderInput(
        string DomainName, int Vcpus, long MemoryBytes, string DiskPath, string InstanceId, string NodeName,
        string ReadySocket, string SerialSocket, string? Kernel = null, string? Initrd = null, string? Cmdline = null);

    /// <summary>Fills a valid template and adds Kumo's own elements. The caller has validated the template.</summary>
    public static string Render(string template, RenderInput r)
    {
        var doc = Parse(template);
        var domain = doc.Root!;
        var kib = (r.MemoryBytes / 1024).ToString(CultureInfo.InvariantCulture);
        foreach (var node in domain.DescendantNodes().OfType<XText>())
            node.Value = Fill(node.Value, r, kib);
        foreach (var a in domain.Descendants().SelectMany(e => e.Attributes()))
            a.Value = Fill(a.Value, r, kib);

        XNamespace kumo = MetadataNamespace;
        var metadata = new XElement("metadata", new XElement(kumo + "instance",
            new XAttribute(XNamespace.Xmlns + "kumo", MetadataNamespace),
            new XAttribute("id", r.InstanceId), new XAttribute("node", r.NodeName)));
        // libvirt keeps <metadata> where the schema wants it; after <name> is where it writes it itself. The UUID is
        // derived from the instance id, so redefining the domain (every start) updates it instead of clashing.
        domain.Element("name")!.AddAfterSelf(new XElement("uuid", UuidOf(r.InstanceId)), metadata);
        var os = domain.Element("os")!;
        if (r.Kernel is not null)
        {
            os.Add(new XElement("kernel", r.Kernel));
            if (r.Initrd is not null) os.Add(new XElement("initrd", r.Initrd));
            if (r.Cmdline is not null) os.Add(new XElement("cmdline", r.Cmdline));
        }
        var devices = domain.Element("devices")!;
        devices.Add(
            new XElement("serial", new XAttribute("type", "unix"),
                new XElement("source", new XAttribute("mode", "bind"), new XAttribute("path", r.SerialSocket)),
                new XElement("target", new XAttribute("port", "0"))),
            new XElement("channel", new XAttribute("type", "unix"),
                new XElement("source", new XAttribute("mode", "bind"), new XAttribute("path", r.ReadySocket)),
                new XElement("target", new XAttribute("type", "virtio"), new XAttribute("name", "kumo.ready"))));
        return doc.ToString();
    }

    /// <summary>The Kumo label (instance id, node) of a domain's XML, or null when Kumo did not make the domain.</summary>
    public static (string Id, string Node)? LabelOf(string domainXml)
    {
        try
        {
            var e = Parse(domainXml).Root?.Element("metadata")?.Element(XName.Get("instance", MetadataNamespace));
            return e is null ? null : ((string?)e.Attribute("id") ?? "", (string?)e.Attribute("node") ?? "");
        }
        catch (XmlException)
        {
            return null;
        }
    }

    /// <summary>A stable UUID (version 8, RFC 9562) for an instance id.</summary>
    public static Guid UuidOf(string instanceId)
    {
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("kumo-domain:" + instanceId));
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true);
    }

    private static string Fill(string s, RenderInput r, string kib) =>
        s.Replace(Name, r.DomainName, StringComparison.Ordinal)
            .Replace(Vcpu, r.Vcpus.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace(MemoryKib, kib, StringComparison.Ordinal)
            .Replace(Image, r.DiskPath, StringComparison.Ordinal);

    /// <summary>No DTDs and no external entities: a template is admin input, but still only a document.</summary>
    private static XDocument Parse(string xml)
    {
        using var reader = XmlReader.Create(new StringReader(xml), new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null });
        return XDocument.Load(reader);
    }

    private static XElement? RequireText(XElement domain, string element, string placeholder, List<string> errors)
    {
        var e = domain.Element(element);
        if (e is null || e.Value.Trim() != placeholder)
        {
            errors.Add($"<{element}> must be exactly {placeholder}");
            return null;
        }
        return e;
    }

    private static int CountOf(string s, string what)
    {
        var n = 0;
        for (var at = s.IndexOf(what, StringComparison.Ordinal); at >= 0; at = s.IndexOf(what, at + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }
}
