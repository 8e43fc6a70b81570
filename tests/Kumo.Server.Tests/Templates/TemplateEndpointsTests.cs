using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Templates;

public sealed class TemplateEndpointsTests : IAsyncLifetime
{
    /// <summary>The same template as Kumo.Core.Tests' DomainTemplatesTests: a user-mode NIC and a virtio qcow2 disk.</summary>
    public const string Small =
        """
        <domain type='qemu'>
          <name>{{name}}</name>
          <memory unit='KiB'>{{memory_kib}}</memory>
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

    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Add_ValidTemplate_IsListedAndShownWithItsXml()
    {
        using var added = await _server.Client.PostAsJsonAsync("/api/v1/templates", new TemplatesPost { Name = "small", Description = "user net", Xml = Small }, Problems.Json);
        Assert.Equal(HttpStatusCode.Created, added.StatusCode);

        var list = await _server.Client.GetFromJsonAsync<DomainTemplate[]>("/api/v1/templates", Problems.Json);
        var shown = await _server.Client.GetFromJsonAsync<DomainTemplate>("/api/v1/templates/small", Problems.Json);

        Assert.Equal(["small"], list!.Select(t => t.Name));
        Assert.Equal(Small, shown!.Xml);
        Assert.NotNull(shown.CreatedBy);
    }

    [Theory]
    [InlineData("bus='virtio'", "bus='{{bus}}'")]
    [InlineData("<interface type='user'>", "<interface type='{{network}}'>")]
    [InlineData("type='qcow2'", "type='raw'")]
    [InlineData("<name>{{name}}</name>", "<name>fixed</name>")]
    [InlineData("<domain type='qemu'>", "<domain type='qemu'")]
    public async Task Add_BadTemplate_Returns422TemplateInvalidAndAddsNothing(string from, string to)
    {
        using var r = await _server.Client.PostAsJsonAsync("/api/v1/templates",
            new TemplatesPost { Name = "bad", Xml = Small.Replace(from, to, StringComparison.Ordinal) }, Problems.Json);

        var problem = await r.AssertProblemAsync(HttpStatusCode.UnprocessableEntity, ProblemTypes.TemplateInvalid);
        Assert.NotEmpty(problem.Errors!["xml"]);
        Assert.Empty((await _server.Client.GetFromJsonAsync<DomainTemplate[]>("/api/v1/templates", Problems.Json))!);
    }

    [Fact]
    public async Task Add_SameNameTwice_Returns409()
    {
        var post = new TemplatesPost { Name = "small", Xml = Small };
        using var first = await _server.Client.PostAsJsonAsync("/api/v1/templates", post, Problems.Json);
        using var second = await _server.Client.PostAsJsonAsync("/api/v1/templates", post, Problems.Json);

        await second.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
    }

    [Fact]
    public async Task Add_ByAUser_Returns403()
    {
        using var alice = _server.ClientFor(await _server.AddUserAsync("alice", "alice-password"));

        using var r = await alice.PostAsJsonAsync("/api/v1/templates", new TemplatesPost { Name = "small", Xml = Small }, Problems.Json);

        Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
    }

    [Fact]
    public async Task Remove_Template_IsGoneAfterwards()
    {
        using var added = await _server.Client.PostAsJsonAsync("/api/v1/templates", new TemplatesPost { Name = "small", Xml = Small }, Problems.Json);

        using var removed = await _server.Client.DeleteAsync("/api/v1/templates/small");
        using var again = await _server.Client.GetAsync("/api/v1/templates/small");

        Assert.Equal(HttpStatusCode.NoContent, removed.StatusCode);
        await again.AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task CreateVm_FromUnknownTemplate_Returns400ValidationNamingTheTemplate()
    {
        await _server.AddNodeAsync("node-a");

        var problem = await (await _server.CreateAsync(new InstancesPost { Name = "x", Template = "nope" })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Contains("template 'nope' does not exist", problem.Errors!["template"][0]);
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task CreateVm_FromTemplate_WithNetworkOrDiskBus_Returns400TemplateOverrideForEachField()
    {
        using var added = await _server.Client.PostAsJsonAsync("/api/v1/templates", new TemplatesPost { Name = "small", Xml = Small }, Problems.Json);

        var problem = await (await _server.CreateAsync(new InstancesPost
        {
            Name = "x",
            Template = "small",
            Network = "lab",
            TemplateOverrides = new Dictionary<string, string> { ["disk.bus"] = "ide" },
        })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.TemplateOverride);

        Assert.Equal(["disk.bus", "network"], problem.Errors!.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task CreateVm_FromTemplate_WithoutALibvirtNode_Returns409NoCapacity()
    {
        await _server.AddNodeAsync("plain");
        using var added = await _server.Client.PostAsJsonAsync("/api/v1/templates", new TemplatesPost { Name = "small", Xml = Small }, Problems.Json);

        var problem = await (await _server.CreateAsync(new InstancesPost { Name = "x", Template = "small", Memory = "64M" }))
            .AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.NoCapacity);

        Assert.Contains("kumo.dev/libvirt", problem.Rejections!["plain"]);
    }
}
