using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using Kumo.Agent.Containers;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kumo.IntegrationTests.Containers;

/// <summary>
/// A real CNCF distribution registry (Debian's docker-registry) on a loopback port, holding an image pushed with
/// podman from a storage of its own, and a kumod that lets nodes pull from it over plain HTTP under the name
/// 127.0.0.1:PORT only (so localhost:PORT, the same registry under another name, is not allowed without TLS).
/// </summary>
public sealed class RegistryKumo : IAsyncLifetime
{
    public const string Repository = "kumo-test/hello";

    private readonly string _dir = Directory.CreateTempSubdirectory("kreg-").FullName;
    private Process? _registry;

    public KumoEnvironment Env { get; private set; } = null!;
    public string Alice { get; private set; } = "";
    public string Bob { get; private set; } = "";
    public int Port { get; private set; }

    /// <summary>What the pushed image's /token holds: generated here, so no other image can pass for it.</summary>
    public string Token { get; } = Guid.NewGuid().ToString("n");

    public string Image => $"127.0.0.1:{Port}/{Repository}:v1";

    public async Task InitializeAsync()
    {
        Port = FreePort();
        var config = Path.Combine(_dir, "config.yml");
        await File.WriteAllTextAsync(config, $"""
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: {Path.Combine(_dir, "storage")}
            http:
              addr: 127.0.0.1:{Port}
            """);
        var psi = new ProcessStartInfo("docker-registry") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("serve");
        psi.ArgumentList.Add(config);
        _registry = Process.Start(psi) ?? throw new InvalidOperationException("could not start docker-registry (scripts/install-deps.sh --test installs it)");
        _ = _registry.StandardOutput.ReadToEndAsync();
        _ = _registry.StandardError.ReadToEndAsync();
        using (var http = new HttpClient())
        {
            await KumoEnvironment.WaitUntilAsync(async () =>
            {
                try
                {
                    using var r = await http.GetAsync($"http://127.0.0.1:{Port}/v2/");
                    return r.StatusCode == HttpStatusCode.OK;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, TimeSpan.FromSeconds(30), "the registry to answer /v2/");
        }
        await PushAsync();
        Env = await KumoEnvironment.StartAsync(true, "--capacity-cpus", "32", "--insecure-registry", $"127.0.0.1:{Port}");
        Alice = await Env.AddUserAsync("alice");
        Bob = await Env.AddUserAsync("bob");
    }

    /// <summary>Builds a busybox-based image holding the token in a podman storage of its own and pushes it.</summary>
    private async Task PushAsync()
    {
        await using var pusher = new ContainerEngine(Path.Combine(_dir, "p"), NullLogger<ContainerEngine>.Instance);
        Directory.CreateDirectory(pusher.Dir);
        await File.WriteAllTextAsync(pusher.ConfigFile, ContainerEngine.ContainersConf(ContainerEngine.Probe()));
        await BaseImages.EnsureBusyboxAsync(pusher, CancellationToken.None);
        var context = Path.Combine(_dir, "context");
        Directory.CreateDirectory(context);
        await File.WriteAllTextAsync(Path.Combine(context, "token"), Token + "\n");
        await File.WriteAllTextAsync(Path.Combine(context, "Containerfile"), $"FROM {BaseImages.BusyboxReference}\nCOPY token /token\nCMD [\"sleep\", \"600\"]\n");
        var built = await pusher.PodmanAsync(["build", "-t", Image, "-f", Path.Combine(context, "Containerfile"), context], CancellationToken.None);
        if (built.ExitCode != 0) throw new InvalidOperationException($"podman build failed: {built.Stderr}");
        var pushed = await pusher.PodmanAsync(["push", "--tls-verify=false", Image], CancellationToken.None);
        if (pushed.ExitCode != 0) throw new InvalidOperationException($"podman push failed: {pushed.Stderr}");
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public async Task DisposeAsync()
    {
        if (Env is not null) await Env.DisposeAsync();
        if (_registry is { HasExited: false })
        {
            _registry.Kill();
            await _registry.WaitForExitAsync();
        }
        _registry?.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}

/// <summary>kumo ct run with a registry image: the node pulls it (progress shown), refusals and failures leave nothing.</summary>
[Trait("Category", "Slow")]
public sealed class ContainerRegistryTests(RegistryKumo fixture) : IClassFixture<RegistryKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private Task<CliResult> Alice(params string[] args) => Env.CliAsAsync(fixture.Alice, args);

    private void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}\n{Env.Diagnostics()}");

    private static void Refused(CliResult r, string expected)
    {
        Assert.True(r.ExitCode != 0, $"expected a refusal, got exit 0: {r.Out}");
        Assert.Contains(expected, r.Err, StringComparison.Ordinal);
        Assert.Single(r.Err.Trim().Split('\n'));
    }

    private ContainerEngine Engine() => new(Path.Combine(Env.StateDir, "agent"), NullLogger<ContainerEngine>.Instance);

    private async Task<bool> EngineHasImageAsync(string reference)
    {
        await using var engine = Engine();
        return (await engine.PodmanAsync(["image", "exists", reference], CancellationToken.None)).ExitCode == 0;
    }

    private async Task<string> EngineContainersAsync(string instanceId)
    {
        await using var engine = Engine();
        var r = await engine.PodmanAsync(["ps", "-a", "--filter", $"label={ContainerReconciler.InstanceLabel}={instanceId}", "--format", "{{.ID}}"], CancellationToken.None);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return r.Stdout.Trim();
    }

    private async Task<Instance> GetAsync(string name)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/instances/{name}");
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fixture.Alice);
        using var response = await Env.Api.Http.SendAsync(request);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<Instance>(ApiClient.Json))!;
    }

    [Fact]
    public async Task Run_WithARegistryImage_PullsItOnTheNodeShowingProgress_AndRunsIt()
    {
        Assert.False(await EngineHasImageAsync(fixture.Image));
        var run = await Alice("ct", "run", "pulled", "--image", fixture.Image);
        Ok(run);
        // The pull's progress reaches the user as the operation's messages.
        Assert.Contains($"pulling {fixture.Image}", run.Out);
        Assert.Contains("container pulled is running", run.Out);

        var token = await Alice("ct", "exec", "pulled", "--", "cat", "/token");
        Ok(token);
        Assert.Equal(fixture.Token, token.Out.Trim());
        Assert.True(await EngineHasImageAsync(fixture.Image));
        var shown = await GetAsync("pulled");
        Assert.Equal(fixture.Image, shown.Image);

        // A second container of the same image uses the node's copy.
        var again = await Alice("ct", "run", "pulled2", "--image", fixture.Image);
        Ok(again);
        Assert.DoesNotContain("pulling", again.Out);

        Ok(await Alice("ct", "rm", "pulled", "--force"));
        Ok(await Alice("ct", "rm", "pulled2", "--force"));
    }

    [Fact]
    public async Task Run_WithAnImageTheRegistryDoesNotHave_FailsWithTheReason_AndLeavesNoContainerOrImage()
    {
        var missing = $"127.0.0.1:{fixture.Port}/kumo-test/nope:v1";
        var run = await Alice("ct", "run", "nope", "--image", missing);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains($"pulling {missing} failed", run.Err);
        Assert.Contains("manifest unknown", run.Err);
        var nope = await GetAsync("nope");
        Assert.Equal(InstanceStates.Error, nope.State);
        Assert.Contains("manifest unknown", nope.StatusMessage);
        Assert.Equal("", await EngineContainersAsync(nope.Id));
        Assert.False(await EngineHasImageAsync(missing));
        Ok(await Alice("ct", "rm", "nope", "--force"));

        // A registry no one listens on: the node says it could not connect.
        var unreachable = await Alice("ct", "run", "away", "--image", "127.0.0.1:1/kumo-test/hello:v1");
        Assert.NotEqual(0, unreachable.ExitCode);
        Assert.Contains("pulling 127.0.0.1:1/kumo-test/hello:v1 failed", unreachable.Err);
        Assert.Contains("connection refused", unreachable.Err);
        Assert.Equal("", await EngineContainersAsync((await GetAsync("away")).Id));
        Ok(await Alice("ct", "rm", "away", "--force"));
    }

    [Fact]
    public async Task Run_FromAPlainHttpRegistryTheAdminDidNotAllow_FailsOnTls()
    {
        // The same registry, but under a name kumod was not told to pull from without TLS.
        var other = $"localhost:{fixture.Port}/{RegistryKumo.Repository}:v1";
        var run = await Alice("ct", "run", "notls", "--image", other);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains($"pulling {other} failed", run.Err);
        Assert.Contains("HTTP response to HTTPS client", run.Err);
        Assert.False(await EngineHasImageAsync(other));
        Ok(await Alice("ct", "rm", "notls", "--force"));
    }

    [Fact]
    public async Task Run_WithAReferenceThatIsNotARegistryImage_IsRefusedBeforeAnythingIsMade()
    {
        // localhost/NAME is the node's own image store, where every project's built images live.
        Refused(await Alice("ct", "run", "local", "--image", "localhost/kumo-01abc:latest"), "names the node's own image store");
        Refused(await Alice("ct", "run", "nohost", "--image", "team/app:1"), "has no registry host");
        Refused(await Alice("ct", "run", "upper", "--image", $"127.0.0.1:{fixture.Port}/Team/App"), "is not a valid reference");

        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/instances")
        {
            Content = JsonContent.Create(new { name = "local", type = "container", image = "localhost/kumo-01abc:latest" }),
        };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fixture.Alice);
        using var response = await Env.Api.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<Problem>(ApiClient.Json);
        Assert.Equal(ProblemTypes.Validation, problem!.Type);
        Assert.Contains("image", problem.Errors!.Keys);
        var list = await Alice("ct", "list", "-o", "json");
        Ok(list);
        Assert.DoesNotContain("\"local\"", list.Out);
    }
}
