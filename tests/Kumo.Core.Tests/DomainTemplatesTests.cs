namespace Kumo.Core.Tests;

public sealed class DomainTemplatesTests
{
    /// <summary>What an admin writes: the machine fixed, four placeholders.</summary>
    public const string Small =
        """
        <domain type='qemu'>
          <name>{{name}}</name>
          <memory unit='KiB'>{{memory_kib}}</memory>
          <currentMemory unit='KiB'>{{memory_kib}}</currentMemory>
          <vcpu>{{vcpu}}</vcpu>
          <os><type arch='x86_64' machine='q35'>hvm</type></os>
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source file='{{image}}'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <interface type='user'><model type='virtio'/></interface>
          </devices>
        </domain>
        """;

    [Fact]
    public void Validate_AcceptsATemplateWithTheFourPlaceholders()
    {
        Assert.Empty(DomainTemplates.Validate(Small));
    }

    [Theory]
    [InlineData("<domain type='qemu'><name>", "not well-formed XML")]
    [InlineData("<network><name>x</name></network>", "root element must be <domain>")]
    [InlineData("<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/shadow'>]><domain type='qemu'><name>&x;</name></domain>", "not well-formed XML")]
    public void Validate_RefusesWhatIsNotADomainDocument(string xml, string reason)
    {
        Assert.Contains(DomainTemplates.Validate(xml), e => e.Contains(reason, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("<name>{{name}}</name>", "<name>fixed</name>", "<name> must be exactly {{name}}")]
    [InlineData("<vcpu>{{vcpu}}</vcpu>", "<vcpu>2</vcpu>", "<vcpu> must be exactly {{vcpu}}")]
    [InlineData("type='qcow2'", "type='raw'", "type='qcow2'")]
    [InlineData("bus='virtio'", "bus='{{bus}}'", "unknown placeholder {{bus}}")]
    [InlineData("<interface type='user'>", "<interface type='{{network}}'>", "unknown placeholder {{network}}")]
    [InlineData("<source file='{{image}}'/>", "<source file='/var/lib/images/shared.qcow2'/>", "exactly one <disk> must have <source file='{{image}}'/>")]
    [InlineData("<os>", "<os><kernel>/boot/vmlinuz</kernel>", "<os><kernel> is set by Kumo")]
    [InlineData("<devices>", "<devices><serial type='pty'/>", "<serial> is set by Kumo")]
    [InlineData("<vcpu>{{vcpu}}</vcpu>", "<vcpu>{{vcpu}}</vcpu><uuid>6d1f4c5e-0000-0000-0000-000000000000</uuid>", "<uuid> is set by Kumo")]
    [InlineData("<domain type='qemu'>", "<domain type='xen'>", "the type must be 'qemu'")]
    [InlineData("</devices>", "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/etc/shadow'/><target dev='vdb' bus='virtio'/></disk></devices>", "the only disk is the image's")]
    [InlineData("<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/><target dev='{{name}}'/>", "{{name}} appears 2 times")]
    public void Validate_RefusesATemplateThatLetsUsersReachFixedParts(string from, string to, string reason)
    {
        var errors = DomainTemplates.Validate(Small.Replace(from, to, StringComparison.Ordinal));

        Assert.Contains(errors, e => e.Contains(reason, StringComparison.Ordinal));
    }

    [Fact]
    public void Render_FillsThePlaceholdersAndAddsKumosLabelConsoleAndReadinessChannel()
    {
        var xml = DomainTemplates.Render(Small, new DomainTemplates.RenderInput(
            "kumo-i1", 2, 256L * 1024 * 1024, "/state/i1/disk.qcow2", "i1", "node-a", "/state/i1/ready.sock", "/state/i1/serial-qemu.sock",
            Kernel: "/images/tiny/vmlinuz", Initrd: "/images/tiny/initrd", Cmdline: "console=ttyS0"));

        Assert.Contains("<name>kumo-i1</name>", xml, StringComparison.Ordinal);
        Assert.Contains("<vcpu>2</vcpu>", xml, StringComparison.Ordinal);
        Assert.Contains("<memory unit=\"KiB\">262144</memory>", xml, StringComparison.Ordinal);
        Assert.Contains("<source file=\"/state/i1/disk.qcow2\" />", xml, StringComparison.Ordinal);
        Assert.Contains("<kernel>/images/tiny/vmlinuz</kernel>", xml, StringComparison.Ordinal);
        Assert.Contains("name=\"kumo.ready\"", xml, StringComparison.Ordinal);
        Assert.Contains("/state/i1/serial-qemu.sock", xml, StringComparison.Ordinal);
        Assert.DoesNotContain("{{", xml, StringComparison.Ordinal);
        Assert.Equal(("i1", "node-a"), DomainTemplates.LabelOf(xml));
        Assert.Contains($"<uuid>{DomainTemplates.UuidOf("i1")}</uuid>", xml, StringComparison.Ordinal);
        Assert.Equal(DomainTemplates.UuidOf("i1"), DomainTemplates.UuidOf("i1"));
        Assert.NotEqual(DomainTemplates.UuidOf("i1"), DomainTemplates.UuidOf("i2"));
    }

    [Fact]
    public void LabelOf_ADomainKumoDidNotMake_IsNull()
    {
        Assert.Null(DomainTemplates.LabelOf("<domain type='qemu'><name>someone-elses</name></domain>"));
    }
}
