using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Api;

public sealed class InstanceEndpointsTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        await _server.AddNodeAsync("node-a");
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    public static TheoryData<string, string?> InvalidNames => new()
    {
        { "empty", "" },
        { "64 characters", new string('a', 64) },
        { "path traversal", "../x" },
        { "uppercase", "Web" },
        { "leading dash", "-web" },
        { "cyrillic look-alike", "w\u0435b" },
        { "zero-width space", "web\u200B" },
        { "NUL", "web\0" },
        { "trailing newline", "web\n" },
        { "missing", null },
    };

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public async Task Create_WithInvalidName_Returns400ValidationAndCreatesNothing(string why, string? name)
    {
        var problem = await (await _server.CreateAsync(new InstancesPost { Name = name })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.True(problem.Errors!.ContainsKey("name"), why);
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("9999T")]
    [InlineData("8Q")]
    [InlineData("1K")]
    public async Task Create_WithInvalidMemory_Returns400ValidationAndCreatesNothing(string memory)
    {
        var problem = await (await _server.CreateAsync(new InstancesPost { Name = "web", Memory = memory })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal(["memory"], problem.Errors!.Keys);
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Create_WithUnknownImage_Returns400ValidationAndCreatesNothing()
    {
        var problem = await (await _server.CreateAsync(new InstancesPost { Name = "web", Image = "no-such-image" })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Contains("no-such-image", problem.Errors!["image"][0]);
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Create_WithUnknownNode_Returns400ValidationAndCreatesNothing()
    {
        var problem = await (await _server.CreateAsync(new InstancesPost { Name = "web", Node = "node-z" })).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Contains("node-z", problem.Errors!["node"][0]);
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Create_WithDuplicateName_Returns409Conflict()
    {
        Assert.Equal(HttpStatusCode.Accepted, (await _server.CreateAsync(new InstancesPost { Name = "web" })).StatusCode);

        await (await _server.CreateAsync(new InstancesPost { Name = "web", Memory = "512M" })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);

        Assert.Equal(1, await _server.CountInstancesAsync());
    }

    [Theory]
    [InlineData("{")]
    [InlineData("{\"name\": }")]
    [InlineData("{\"name\": \"web\", \"cpus\": \"two\"}")]
    [InlineData("[]")]
    [InlineData("null")]
    [InlineData("")]
    public async Task Create_WithMalformedJson_Returns400MalformedBody(string json)
    {
        var response = await _server.Client.PostAsync("/api/v1/instances", new StringContent(json, Encoding.UTF8, "application/json"));

        await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.MalformedBody);
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData(null)]
    public async Task Create_WithWrongContentType_Returns415(string? contentType)
    {
        var content = new ByteArrayContent("{\"name\":\"web\"}"u8.ToArray());
        if (contentType is not null) content.Headers.ContentType = new MediaTypeHeaderValue(contentType);

        var response = await _server.Client.PostAsync("/api/v1/instances", content);

        await response.AssertProblemAsync(HttpStatusCode.UnsupportedMediaType, ProblemTypes.UnsupportedMediaType);
        Assert.Equal(0, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Create_WithValidBody_Returns202WithOperationLocation()
    {
        var response = await _server.CreateAsync(new InstancesPost { Name = "web", Memory = "512M", Cpus = 2 });

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var op = (await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
        Assert.Equal($"/api/v1/operations/{op.Id}", response.Headers.Location?.OriginalString);
        Assert.Equal(("create", "web", OperationStatuses.Running), (op.Kind, op.Target, op.Status));
        var instance = (await _server.Client.GetFromJsonAsync<Instance>("/api/v1/instances/web", Problems.Json))!;
        Assert.Equal((InstanceStates.Creating, "node-a", 512 * ByteSize.MiB, 2), (instance.State, instance.Node, instance.MemoryBytes, instance.Cpus));
    }

    [Fact]
    public async Task Create_20InParallelWithTheSameName_AcceptsExactlyOne()
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => _server.CreateAsync(new InstancesPost { Name = "race" })));

        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.Accepted);
        var conflicts = responses.Where(r => r.StatusCode != HttpStatusCode.Accepted).ToList();
        Assert.Equal(19, conflicts.Count);
        foreach (var r in conflicts) await r.AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
        Assert.Equal(1, await _server.CountInstancesAsync());
    }

    [Fact]
    public async Task Get_UnknownInstance_Returns404Problem()
    {
        var problem = await (await _server.Client.GetAsync("/api/v1/instances/ghost")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);

        Assert.Equal("/api/v1/instances/ghost", problem.Instance);
    }

    [Fact]
    public async Task Get_ExistingInstance_ReturnsItsVersionAsETag()
    {
        await _server.CreateAsync(new InstancesPost { Name = "web" });

        var response = await _server.Client.GetAsync("/api/v1/instances/web");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("\"1\"", response.Headers.ETag?.Tag);
    }

    [Fact]
    public async Task Put_WithCurrentIfMatch_Returns200AndANewETag()
    {
        await _server.CreateAsync(new InstancesPost { Name = "web" });
        var etag = (await _server.Client.GetAsync("/api/v1/instances/web")).Headers.ETag!;

        var response = await PutAsync("web", new InstancePut { Description = "front end" }, etag.Tag);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.NotEqual(etag.Tag, response.Headers.ETag?.Tag);
        Assert.Equal("\"2\"", response.Headers.ETag?.Tag);
        var instance = (await response.Content.ReadFromJsonAsync<Instance>(Problems.Json))!;
        Assert.Equal(("front end", 2L), (instance.Description, instance.Version));
    }

    [Fact]
    public async Task Put_WithStaleIfMatch_Returns412AndChangesNothing()
    {
        await _server.CreateAsync(new InstancesPost { Name = "web" });
        var stale = (await _server.Client.GetAsync("/api/v1/instances/web")).Headers.ETag!.Tag;
        Assert.Equal(HttpStatusCode.OK, (await PutAsync("web", new InstancePut { Description = "first" }, stale)).StatusCode);

        var response = await PutAsync("web", new InstancePut { Description = "second" }, stale);

        await response.AssertProblemAsync(HttpStatusCode.PreconditionFailed, ProblemTypes.PreconditionFailed);
        var instance = (await _server.Client.GetFromJsonAsync<Instance>("/api/v1/instances/web", Problems.Json))!;
        Assert.Equal("first", instance.Description);
    }

    [Fact]
    public async Task Put_WithIfMatchStar_UpdatesWhateverTheCurrentVersion()
    {
        await _server.CreateAsync(new InstancesPost { Name = "web" });
        Assert.Equal(HttpStatusCode.OK, (await PutAsync("web", new InstancePut { Description = "first" }, "\"1\"")).StatusCode);

        var response = await PutAsync("web", new InstancePut { Description = "second" }, "*");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("\"3\"", response.Headers.ETag?.Tag);
    }

    [Fact]
    public async Task Put_WithIfMatchStar_OnAMissingInstance_Returns404()
    {
        var response = await PutAsync("ghost", new InstancePut { Description = "x" }, "*");

        await response.AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task Put_WithoutIfMatch_Returns428()
    {
        await _server.CreateAsync(new InstancesPost { Name = "web" });

        var response = await PutAsync("web", new InstancePut { Description = "blind write" }, ifMatch: null);

        await response.AssertProblemAsync((HttpStatusCode)428, ProblemTypes.PreconditionRequired);
    }

    private Task<HttpResponseMessage> PutAsync(string name, InstancePut body, string? ifMatch)
    {
        var request = new HttpRequestMessage(HttpMethod.Put, $"/api/v1/instances/{name}") { Content = JsonContent.Create(body, options: Problems.Json) };
        if (ifMatch is not null) request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        return _server.Client.SendAsync(request);
    }
}
