using System.Net;
using System.Text;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Kumo.IntegrationTests.Vms;

namespace Kumo.IntegrationTests.Api;

/// <summary>Bad requests against a kumod with a real agent: the exact problem, and nothing changed anywhere.</summary>
[Trait("Category", "Slow")]
public sealed class BadInputTests(LocalKumo fixture) : IClassFixture<LocalKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private (int Instances, int Qemu, int Dirs) Snapshot()
    {
        var instances = Env.Api.ListAsync().GetAwaiter().GetResult().Count;
        var dirs = Directory.Exists(Env.LocalInstancesDir) ? Directory.GetDirectories(Env.LocalInstancesDir).Length : 0;
        return (instances, Env.QemuPids().Count, dirs);
    }

    public static TheoryData<string, string, int, string> Cases => new()
    {
        { "empty name", """{"name":"","image":"tiny"}""", 400, ProblemTypes.Validation },
        { "long name", $$"""{"name":"{{new string('a', 64)}}","image":"tiny"}""", 400, ProblemTypes.Validation },
        { "path name", """{"name":"../x","image":"tiny"}""", 400, ProblemTypes.Validation },
        { "cyrillic a", """{"name":"w\u0430b","image":"tiny"}""", 400, ProblemTypes.Validation },
        { "zero-width", """{"name":"we\u200bb","image":"tiny"}""", 400, ProblemTypes.Validation },
        { "memory 0", """{"name":"m0","image":"tiny","memory":"0"}""", 400, ProblemTypes.Validation },
        { "memory -1", """{"name":"m1","image":"tiny","memory":"-1"}""", 400, ProblemTypes.Validation },
        { "memory 9999T", """{"name":"m2","image":"tiny","memory":"9999T"}""", 400, ProblemTypes.Validation },
        { "unknown image", """{"name":"i1","image":"nope"}""", 400, ProblemTypes.Validation },
        { "unknown node", """{"name":"n1","image":"tiny","node":"nowhere"}""", 400, ProblemTypes.Validation },
        { "malformed json", """{"name":"j1",""", 400, ProblemTypes.MalformedBody },
        { "wrong json type", """{"name":42}""", 400, ProblemTypes.MalformedBody },
        { "too big for any node", """{"name":"b1","image":"tiny","memory":"4T"}""", 409, ProblemTypes.NoCapacity },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BadCreate_ReturnsExactProblem_AndChangesNothing(string why, string body, int status, string type)
    {
        var before = Snapshot();
        using var r = await Env.Api.Http.PostAsync("/api/v1/instances", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.True((int)r.StatusCode == status, $"{why}: got {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
        Assert.Contains($"\"type\":\"{type}\"", await r.Content.ReadAsStringAsync());
        Assert.Equal(before, Snapshot());
    }

    [Fact]
    public async Task WrongContentType_Returns415_AndChangesNothing()
    {
        var before = Snapshot();
        using var r = await Env.Api.Http.PostAsync("/api/v1/instances", new StringContent("""{"name":"ct1"}""", Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, r.StatusCode);
        Assert.Contains(ProblemTypes.UnsupportedMediaType, await r.Content.ReadAsStringAsync());
        Assert.Equal(before, Snapshot());
    }

    [Fact]
    public async Task DuplicateName_Returns409_AndTwentyParallelCreatesOfOneNameMakeOne()
    {
        var before = Snapshot();
        var tasks = Enumerable.Range(0, 20).Select(_ => Env.Api.CreateAsync(new { name = "twin", image = "tiny", memory = "128M", disk = "64M", stopped = true })).ToList();
        var results = await Task.WhenAll(tasks);
        Assert.Single(results, r => r.Status == HttpStatusCode.Accepted);
        Assert.Equal(19, results.Count(r => r.Status == HttpStatusCode.Conflict && r.Problem!.Type == ProblemTypes.Conflict));
        await Env.Api.WaitAsync(results.Single(r => r.Operation is not null).Operation!);
        Assert.Equal(before.Instances + 1, Snapshot().Instances);
        await Env.DoAsync("twin", "delete");
        Assert.Equal(before, Snapshot());
    }

    [Fact]
    public async Task StaleIfMatch_Returns412_AndKeepsTheInstance()
    {
        await Env.CreateAsync("etag1", new { stopped = true });
        using var get = await Env.Api.Http.GetAsync("/api/v1/instances/etag1");
        var etag = get.Headers.ETag!.Tag;
        using var put1 = new HttpRequestMessage(HttpMethod.Put, "/api/v1/instances/etag1") { Content = new StringContent("""{"description":"first"}""", Encoding.UTF8, "application/json") };
        put1.Headers.TryAddWithoutValidation("If-Match", etag);
        Assert.Equal(HttpStatusCode.OK, (await Env.Api.Http.SendAsync(put1)).StatusCode);
        using var put2 = new HttpRequestMessage(HttpMethod.Put, "/api/v1/instances/etag1") { Content = new StringContent("""{"description":"second"}""", Encoding.UTF8, "application/json") };
        put2.Headers.TryAddWithoutValidation("If-Match", etag);
        using var stale = await Env.Api.Http.SendAsync(put2);
        Assert.Equal(HttpStatusCode.PreconditionFailed, stale.StatusCode);
        Assert.Contains(ProblemTypes.PreconditionFailed, await stale.Content.ReadAsStringAsync());
        Assert.Equal("first", (await Env.Api.GetAsync("etag1"))!.Description);
        await Env.DoAsync("etag1", "delete");
    }
}
