using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Images;

/// <summary>
/// POST /images/build-base through the real API: what it refuses, and the container kind, which kumod only catalogues
/// (each node builds the rootfs on first use). The vm build (minutes of mmdebstrap) is covered by the integration tests.
/// </summary>
public sealed class BaseImageBuildTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<HttpResponseMessage> BuildAsync(object body) => _server.Client.PostAsJsonAsync("/api/v1/images/build-base", body);

    [Fact]
    public async Task BuildBase_UnknownDistro_Returns400NamingWhatKumoBuilds()
    {
        using var r = await BuildAsync(new ImagesBuildBasePost { Distro = "ubuntu", Type = "vm" });
        var problem = await r.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
        Assert.Contains("debian", problem.Errors!["distro"][0]);
    }

    [Fact]
    public async Task BuildBase_BadType_Returns400ForType()
    {
        using var r = await BuildAsync(new ImagesBuildBasePost { Distro = "debian", Type = "vmx" });
        var problem = await r.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
        Assert.Contains("vmx", problem.Errors!["type"][0]);
    }

    [Fact]
    public async Task BuildBase_DebianContainer_IsCataloguedInSystemOnce_AndASecondBuildIs409()
    {
        using var r = await BuildAsync(new ImagesBuildBasePost { Distro = "debian", Type = "container" });
        Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);
        var op = (await r.Content.ReadFromJsonAsync<Operation>(Kumo.Server.Api.Problems.Json))!;
        Assert.Equal(OperationStatuses.Succeeded, op.Status);

        var images = (await _server.Client.GetFromJsonAsync<List<Image>>("/api/v1/images?type=container", Kumo.Server.Api.Problems.Json))!;
        var debian = Assert.Single(images, i => i.Name == "debian");
        Assert.Equal("system", debian.Project);
        Assert.Equal(ReadinessModes.None, debian.Readiness);

        using var again = await BuildAsync(new ImagesBuildBasePost { Distro = "debian", Type = "container" });
        var problem = await again.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
        Assert.Contains("already built", problem.Detail);
    }
}
