using System.Formats.Tar;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Kumo.Agent.Containers;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kumo.IntegrationTests.Containers;

/// <summary>kumod with a small build context limit, so "too large" is cheap to reach.</summary>
public sealed class BuildKumo : IAsyncLifetime
{
    public const long ContextLimit = 256 * 1024;

    public KumoEnvironment Env { get; private set; } = null!;
    public string Alice { get; private set; } = "";
    public string Bob { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Env = await KumoEnvironment.StartAsync(true, "--capacity-cpus", "32", "--build-context-max", "256K");
        Alice = await Env.AddUserAsync("alice");
        Bob = await Env.AddUserAsync("bob");
    }

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

/// <summary>
/// kumo ct build end to end: the real CLI packs a directory, kumod checks the context and hands it to the agent over a
/// broker session, the agent builds it with podman's build API (FROM busybox, offline), and the image runs as a
/// container; image rm is refused while a container uses it and then removes the image from the engine.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ContainerBuildTests(BuildKumo fixture) : IClassFixture<BuildKumo>, IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly string _dir = Directory.CreateTempSubdirectory("kumo-build-test-").FullName;

    private KumoEnvironment Env => fixture.Env;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Task<CliResult> Alice(params string[] args) => Env.CliAsAsync(fixture.Alice, args);

    private void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}\n{Env.Diagnostics()}");

    private static void Refused(CliResult r, string expected)
    {
        Assert.True(r.ExitCode != 0, $"expected a refusal, got exit 0: {r.Out}");
        Assert.Contains(expected, r.Err, StringComparison.Ordinal);
        Assert.Single(r.Err.Trim().Split('\n'));
    }

    private string Context(string name, params (string Path, string Content)[] files)
    {
        var dir = Path.Combine(_dir, name);
        foreach (var (path, content) in files)
        {
            var full = Path.Combine(dir, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, content);
        }
        return dir;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", fixture.Alice);
        return await Env.Api.Http.SendAsync(request);
    }

    private static async Task<string> ProblemTypeAsync(HttpResponseMessage r) =>
        (await r.Content.ReadFromJsonAsync<Problem>(ApiClient.Json))!.Type;

    private ContainerEngine Engine() => new(Path.Combine(Env.StateDir, "agent"), NullLogger<ContainerEngine>.Instance);

    private async Task<bool> EngineHasAsync(string reference)
    {
        await using var engine = Engine();
        return (await engine.PodmanAsync(["image", "exists", reference], CancellationToken.None)).ExitCode == 0;
    }

    [Fact]
    public async Task Build_FromContainerfileWithRunAndCopy_RunsAsAContainerThatReadsTheCopiedFile()
    {
        var token = Guid.NewGuid().ToString("n");
        var dir = Context("app",
            ("Containerfile", "FROM busybox\nRUN echo built-at-run > /built\nCOPY site/msg.txt /msg.txt\nCMD [\"sleep\", \"600\"]\n"),
            ("site/msg.txt", $"copied-{token}\n"),
            ("secret.txt", "left out\n"),
            (".dockerignore", "# not sent\nsecret.txt\n"));

        var build = await Alice("ct", "build", dir, "-t", "myapp");
        Ok(build);
        Assert.Contains("STEP 2/4: RUN echo built-at-run", build.Out);
        Assert.Contains("image myapp built on", build.Out);

        var list = await Alice("image", "list", "--type", "container");
        Ok(list);
        Assert.Contains("myapp", list.Out);
        Assert.Contains("busybox", list.Out);

        Ok(await Alice("ct", "run", "fromapp", "--image", "myapp"));
        var copied = await Alice("ct", "exec", "fromapp", "--", "cat", "/msg.txt", "/built");
        Ok(copied);
        Assert.Contains($"copied-{token}", copied.Out);
        Assert.Contains("built-at-run", copied.Out);
        // .dockerignore kept secret.txt out of the context, so a COPY of everything would not have it either.
        Refused(await Alice("ct", "build", Context("ignored", ("Dockerfile", "FROM busybox\nCOPY secret.txt /s\n"),
            ("secret.txt", "x"), (".dockerignore", "secret.txt\n")), "-t", "ignored"), "secret.txt");

        Ok(await Alice("ct", "rm", "fromapp", "--force"));
        Ok(await Alice("image", "rm", "myapp", "--type", "container"));
    }

    [Fact]
    public async Task Build_WithAFailingRunStep_ShowsTheStepsOutput_AndRecordsNoImage()
    {
        var token = Guid.NewGuid().ToString("n");
        var dir = Context("fails", ("Dockerfile", $"FROM busybox\nRUN echo before-{token}; exit 3\n"));

        var build = await Alice("ct", "build", dir, "-t", "broken");

        Assert.NotEqual(0, build.ExitCode);
        Assert.Contains($"before-{token}", build.Out);
        Assert.Contains("the build of 'broken' failed", build.Err);
        using var get = await SendAsync(HttpMethod.Get, "/api/v1/images/broken");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
    }

    [Fact]
    public async Task ImageRm_WhileAContainerUsesIt_IsRefused_AndAfterwardsLeavesTheEngine()
    {
        Ok(await Alice("ct", "build", Context("used", ("Dockerfile", "FROM busybox\nRUN touch /marker\n")), "-t", "used"));
        using var got = await SendAsync(HttpMethod.Get, "/api/v1/images/used");
        var image = (await got.Content.ReadFromJsonAsync<Image>(ApiClient.Json))!;
        Assert.Equal("container", image.Type);
        Assert.NotNull(image.Node);
        var reference = $"localhost/kumo-{image.Id}:latest";
        Assert.True(await EngineHasAsync(reference));
        Ok(await Alice("ct", "run", "user", "--image", "used", "--", "sleep", "600"));

        Refused(await Alice("image", "rm", "used", "--type", "container"), "used by instance(s) user");
        using (var api = await SendAsync(HttpMethod.Delete, "/api/v1/images/used?type=container"))
        {
            Assert.Equal(HttpStatusCode.Conflict, api.StatusCode);
            Assert.Equal(ProblemTypes.InvalidState, await ProblemTypeAsync(api));
        }
        Assert.True(await EngineHasAsync(reference));

        Ok(await Alice("ct", "rm", "user", "--force"));
        Ok(await Alice("image", "rm", "used", "--type", "container"));
        Assert.False(await EngineHasAsync(reference));
        var list = await Alice("image", "list", "--type", "container");
        Ok(list);
        Assert.DoesNotContain("used", list.Out);
        // The name is free again.
        Ok(await Alice("ct", "build", Context("used2", ("Dockerfile", "FROM busybox\n")), "-t", "used"));
        Ok(await Alice("image", "rm", "used", "--type", "container"));
    }

    [Fact]
    public async Task BuildCli_BadInput_IsOneLineAndNonZero()
    {
        Refused(await Alice("ct", "build", Context("nofile", ("README", "no build file")), "-t", "x"), "has no Containerfile or Dockerfile");
        Refused(await Alice("ct", "build", Context("badtag", ("Dockerfile", "FROM busybox\n")), "-t", "My_App"), "not a valid RFC 1123 label");
        Refused(await Alice("ct", "build", Path.Combine(_dir, "missing"), "-t", "x"), "no such directory");
        Refused(await Alice("ct", "build", Context("escape", ("Dockerfile", "FROM busybox\n")), "-t", "x", "-f", "../Dockerfile"), "give a path inside");
        Refused(await Alice("ct", "build", Context("builtin", ("Dockerfile", "FROM busybox\n")), "-t", "busybox"), "is a built-in image");
        var big = Context("big", ("Dockerfile", "FROM busybox\nCOPY blob /blob\n"));
        await File.WriteAllBytesAsync(Path.Combine(big, "blob"), new byte[BuildKumo.ContextLimit + 1]);
        Refused(await Alice("ct", "build", big, "-t", "big"), "the build context is");
        // A Dockerfile that does not parse: the engine's reason, no image.
        var bad = await Alice("ct", "build", Context("garbage", ("Dockerfile", "FROM busybox\nNOTANINSTRUCTION x\n")), "-t", "garbage");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("the build of 'garbage' failed", bad.Err);
    }

    [Fact]
    public async Task BuildApi_RefusesContextsThatEscapeOrLackABuildFile_WithProblemTypes()
    {
        async Task<HttpResponseMessage> PostTarAsync(string query, Action<TarWriter> fill)
        {
            var tar = new MemoryStream();
            await using (var w = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true)) fill(w);
            var content = new ByteArrayContent(tar.ToArray());
            content.Headers.ContentType = new MediaTypeHeaderValue("application/x-tar");
            return await SendAsync(HttpMethod.Post, "/api/v1/images/build?" + query, content);
        }
        static void File(TarWriter w, string name, string text)
        {
            var e = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(text)) };
            w.WriteEntry(e);
        }

        using (var r = await PostTarAsync("name=evil", w => { File(w, "Dockerfile", "FROM busybox\n"); File(w, "../../etc/evil", "x"); }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal(ProblemTypes.BuildContextRejected, await ProblemTypeAsync(r));
        }
        using (var r = await PostTarAsync("name=evil", w =>
        {
            File(w, "Dockerfile", "FROM busybox\nCOPY link /x\n");
            w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "sub/link") { LinkName = "../../etc/passwd" });
        }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal(ProblemTypes.BuildContextRejected, await ProblemTypeAsync(r));
        }
        using (var r = await PostTarAsync("name=nofile", w => File(w, "app.txt", "x")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Contains("no Containerfile or Dockerfile", (await r.Content.ReadFromJsonAsync<Problem>(ApiClient.Json))!.Detail);
        }
        using (var r = await PostTarAsync("name=Bad_Name", w => File(w, "Dockerfile", "FROM busybox\n")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal(ProblemTypes.Validation, await ProblemTypeAsync(r));
        }
        using (var r = await PostTarAsync("name=toolarge", w => File(w, "Dockerfile", new string('#', (int)BuildKumo.ContextLimit + 10))))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
            Assert.Equal(ProblemTypes.BuildContextTooLarge, await ProblemTypeAsync(r));
        }
        var garbage = new byte[2048];
        System.Text.Encoding.ASCII.GetBytes("hello, not a tar archive").CopyTo(garbage, 0);
        var notTar = new ByteArrayContent(garbage);
        notTar.Headers.ContentType = new MediaTypeHeaderValue("application/x-tar");
        using (var r = await SendAsync(HttpMethod.Post, "/api/v1/images/build?name=notatar", notTar))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal(ProblemTypes.BuildContextRejected, await ProblemTypeAsync(r));
        }
        using (var r = await PostTarAsync("name=elsewhere&node=no-such-node", w => File(w, "Dockerfile", "FROM busybox\n")))
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
    }

    [Fact]
    public async Task BuiltImages_AreProjectScoped_AnotherUserCannotRunThem()
    {
        Ok(await Alice("ct", "build", Context("mine", ("Dockerfile", "FROM busybox\n")), "-t", "mine"));
        var bob = await Env.CliAsAsync(fixture.Bob, "ct", "run", "steal", "--image", "mine", "--", "sleep", "60");
        Assert.NotEqual(0, bob.ExitCode);
        Assert.Contains("image 'mine' does not exist", bob.Err);
        Ok(await Alice("image", "rm", "mine", "--type", "container"));
    }

    [Fact]
    public async Task Build_FromTheProjectsOwnEarlierImage_WithBuildArgs_BuildsOnIt()
    {
        var token = Guid.NewGuid().ToString("n");
        Ok(await Alice("ct", "build", Context("base", ("Containerfile", "FROM busybox\nRUN echo from-base > /base\n")), "-t", "base1"));
        var child = await Alice("ct", "build", Context("child",
            ("Containerfile", "FROM base1 AS first\nARG GREETING=unset\nRUN echo \"$GREETING\" > /greeting\nFROM first\nCMD [\"sleep\", \"600\"]\n")),
            "-t", "child1", "--build-arg", $"GREETING=hello-{token}");
        Ok(child);
        Ok(await Alice("ct", "run", "fromchild", "--image", "child1"));
        var files = await Alice("ct", "exec", "fromchild", "--", "cat", "/base", "/greeting");
        Ok(files);
        Assert.Contains("from-base", files.Out);
        Assert.Contains($"hello-{token}", files.Out);
        Ok(await Alice("ct", "rm", "fromchild", "--force"));
        Ok(await Alice("image", "rm", "child1", "--type", "container"));
        Ok(await Alice("image", "rm", "base1", "--type", "container"));
    }

    [Fact]
    public async Task Build_FromAnotherProjectsImageOrTheNodesStore_IsRefusedBeforeTheNodeBuilds()
    {
        Ok(await Env.CliAsAsync(fixture.Bob, "ct", "build", Context("bobs", ("Containerfile", "FROM busybox\nRUN echo bob > /bob\n")), "-t", "bobbase"));
        var images = await Env.CliAsAsync(fixture.Bob, "image", "list", "--type", "container", "-o", "json");
        Ok(images);
        var bobId = System.Text.Json.JsonDocument.Parse(images.Out).RootElement.EnumerateArray().First(i => i.GetProperty("name").GetString() == "bobbase").GetProperty("id").GetString();

        Refused(await Alice("ct", "build", Context("steal1", ("Containerfile", "FROM bobbase\n")), "-t", "steal1"),
            "there is no container image 'bobbase' in project alice");
        Refused(await Alice("ct", "build", Context("steal2", ("Containerfile", $"FROM busybox\nCOPY --from=localhost/kumo-{bobId}:latest /bob /bob\n")), "-t", "steal2"),
            "names the node's own image store");
        Refused(await Alice("ct", "build", Context("steal3", ("Containerfile", "ARG BASE=bobbase\nFROM $BASE\n")), "-t", "steal3"),
            "an image given by a variable cannot be checked");
        Refused(await Alice("ct", "build", Context("badarg", ("Containerfile", "FROM busybox\n")), "-t", "badarg", "--build-arg", "1X=y"),
            "is not KEY=VALUE");
        var list = await Alice("image", "list", "--type", "container");
        Ok(list);
        Assert.DoesNotContain("steal", list.Out);

        using var content = new ByteArrayContent(await TarOfAsync(Context("api-steal", ("Containerfile", "FROM bobbase\n"))));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/x-tar");
        using var r = await SendAsync(HttpMethod.Post, "/api/v1/images/build?name=apisteal", content);
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal(ProblemTypes.BuildContextRejected, await ProblemTypeAsync(r));
        using var badArg = new ByteArrayContent(await TarOfAsync(Context("api-arg", ("Containerfile", "FROM busybox\n"))));
        badArg.Headers.ContentType = new MediaTypeHeaderValue("application/x-tar");
        using var r2 = await SendAsync(HttpMethod.Post, "/api/v1/images/build?name=apiarg&buildArg=1X%3Dy", badArg);
        Assert.Equal(HttpStatusCode.BadRequest, r2.StatusCode);
        Assert.Equal(ProblemTypes.Validation, await ProblemTypeAsync(r2));
        Ok(await Env.CliAsAsync(fixture.Bob, "image", "rm", "bobbase", "--type", "container"));
    }

    private static async Task<byte[]> TarOfAsync(string dir)
    {
        using var buffer = new MemoryStream();
        await TarFile.CreateFromDirectoryAsync(dir, buffer, includeBaseDirectory: false);
        return buffer.ToArray();
    }
}
