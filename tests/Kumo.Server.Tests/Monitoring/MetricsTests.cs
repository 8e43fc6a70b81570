using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Monitoring;

/// <summary>Agent samples through the real gRPC endpoint into the node, instance and Prometheus views.</summary>
public sealed class MetricsTests : ServerWithNode
{
    [Fact]
    public async Task TwoSamples_ShowRatesInNodesAndInstanceHistory()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        var id = await CreateRunningAsync(alice, "web");

        await Agent.ReportMetricsAsync(Report(Node(busy: 100, idle: 300), Guest(id, "boot/1/10", cpu: 10, rss: 100 * ByteSize.MiB)));
        await Agent.ReportMetricsAsync(Report(Node(busy: 103, idle: 304), Guest(id, "boot/1/10", cpu: 12.5, rss: 120 * ByteSize.MiB)));

        var node = Assert.Single((await alice.GetFromJsonAsync<Node[]>("/api/v1/nodes", Problems.Json))!);
        Assert.NotNull(node.Metrics);
        // 3 of 7 CPU-seconds busy between the two samples.
        Assert.Equal(42.9, node.Metrics.CpuPercent);
        Assert.Equal(2 * ByteSize.GiB, node.Metrics.MemoryUsedBytes);
        var history = (await alice.GetFromJsonAsync<InstanceMetrics>("/api/v1/instances/web/metrics", Problems.Json))!;
        Assert.Equal(("web", "alice", "node-a"), (history.Instance, history.Project, history.Node));
        Assert.Equal([10, 12.5], history.Samples.Select(s => s.CpuSeconds));
        Assert.Null(history.Samples[0].CpuPercent);
        Assert.True(history.Samples[1].CpuPercent > 0);
        Assert.Equal(120 * ByteSize.MiB, history.Samples[1].MemoryRssBytes);
        Assert.Null(history.Samples[1].NetRxBytes);
    }

    [Fact]
    public async Task Prometheus_NamesNodeAndGuestSeries_AndAUsersMetricsTokenSeesOnlyTheirOwnInstances()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        using var bob = Server.ClientFor(await Server.AddUserAsync("bob", "bob-password"));
        using var bobScraper = Server.ClientFor((await CreateTokenAsync(bob, metrics: true)).Secret);
        var web = await CreateRunningAsync(alice, "web");
        var db = await CreateRunningAsync(bob, "db");
        await Agent.ReportMetricsAsync(Report(Node(busy: 50, idle: 60), Guest(web, "k1", cpu: 12.5, rss: 64 * ByteSize.MiB), Guest(db, "k2", cpu: 3, rss: 32 * ByteSize.MiB)));

        var asAdmin = await Server.Client.GetStringAsync("/metrics");
        var asBob = await bobScraper.GetStringAsync("/metrics");

        Assert.Contains("kumo_instance_cpu_seconds_total{node=\"node-a\",instance_name=\"web\",project=\"alice\",owner=\"alice\"} 12.5", asAdmin);
        Assert.Contains("kumo_instance_memory_rss_bytes{node=\"node-a\",instance_name=\"db\",project=\"bob\",owner=\"bob\"} 33554432", asAdmin);
        Assert.Contains("kumo_node_cpu_seconds_total{node=\"node-a\",mode=\"busy\"} 50", asAdmin);
        Assert.Contains("instance_name=\"db\"", asBob);
        Assert.DoesNotContain("instance_name=\"web\"", asBob);
        Assert.Contains("kumo_node_memory_total_bytes{node=\"node-a\"}", asBob);
        var summary = (await bob.GetFromJsonAsync<MetricsSummary>("/api/v1/metrics", Problems.Json))!;
        Assert.Equal(["db"], summary.Instances.Select(i => i.Name));
        Assert.Equal(3, summary.Instances[0].Latest!.CpuSeconds);
        Assert.Equal(HttpStatusCode.NotFound, (await bob.GetAsync("/api/v1/instances/web/metrics?project=alice")).StatusCode);
    }

    [Fact]
    public async Task Prometheus_OutputPassesPromtoolCheckMetrics()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        var web = await CreateRunningAsync(alice, "web");
        var guest = Guest(web, "k1", cpu: 7, rss: 64 * ByteSize.MiB);
        guest.HasNet = true;
        guest.NetRxBytes = 1000;
        guest.NetTxBytes = 2000;
        await Agent.ReportMetricsAsync(Report(Node(busy: 50, idle: 60), guest));

        var text = await Server.Client.GetStringAsync("/metrics");

        var (exit, output) = await PromtoolAsync(text);
        Assert.True(exit == 0, $"promtool check metrics failed ({exit}):\n{output}\n--- input:\n{text}");
        Assert.Contains("kumo_instance_network_receive_bytes_total{node=\"node-a\",instance_name=\"web\",project=\"alice\",owner=\"alice\"} 1000", text);
    }

    [Fact]
    public async Task GuestOfAnotherNode_IsNotCounted()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        var id = await CreateRunningAsync(alice, "web");
        await using var other = await FakeAgent.StartAsync(Server, "node-b");

        await other.ReportMetricsAsync(Report(Node(1, 1), Guest(id, "k", cpu: 99, rss: 1)));

        Assert.Equal(0, await CpuSecondsAsync(alice));
    }

    [Fact]
    public async Task UnknownInstance_MetricsIs404Problem()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));

        await (await alice.GetAsync("/api/v1/instances/nope/metrics")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task MetricsToken_ScrapesMetrics_AndIsRefusedEverywhereElse()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        var token = await CreateTokenAsync(alice, metrics: true);
        using var scraper = Server.ClientFor(token.Secret);

        using var scrape = await scraper.GetAsync("/metrics");
        using var list = await scraper.GetAsync("/api/v1/instances");
        using var summary = await scraper.GetAsync("/api/v1/metrics");
        using var mint = await scraper.PostAsync("/api/v1/tokens", JsonContent.Create(new TokensPost { Name = "escalate" }, options: Problems.Json));

        Assert.Equal(TokenKinds.Metrics, token.Kind);
        Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
        Assert.Contains("# TYPE kumo_node_cpus gauge", await scrape.Content.ReadAsStringAsync());
        await list.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.Forbidden);
        await summary.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.Forbidden);
        await mint.AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.Forbidden);
        Assert.Contains((await alice.GetFromJsonAsync<List<ApiToken>>("/api/v1/tokens", Problems.Json))!, t => t.Id == token.Id && t.Kind == TokenKinds.Metrics);
    }

    [Fact]
    public async Task Metrics_WithAUsersSessionOrApiToken_Is403_ButWithAnAdminsIs200()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        using var aliceApi = Server.ClientFor((await CreateTokenAsync(alice, metrics: false)).Secret);

        await (await alice.GetAsync("/metrics")).AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.Forbidden);
        await (await aliceApi.GetAsync("/metrics")).AssertProblemAsync(HttpStatusCode.Forbidden, ProblemTypes.Forbidden);
        Assert.Equal(HttpStatusCode.OK, (await Server.Client.GetAsync("/metrics")).StatusCode);
    }

    private static async Task<ApiToken> CreateTokenAsync(HttpClient client, bool metrics)
    {
        using var r = await client.PostAsync("/api/v1/tokens", JsonContent.Create(new TokensPost { Name = "scrape", Metrics = metrics }, options: Problems.Json));
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        return (await r.Content.ReadFromJsonAsync<ApiToken>(Problems.Json))!;
    }

    [Fact]
    public async Task Metrics_WithoutToken_Is401()
    {
        using var anonymous = Server.ClientFor(null);

        await (await anonymous.GetAsync("/metrics")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
    }

    [Theory]
    [InlineData(null, 0.0, "k", 10.0, 10.0)]       // first sample of a process: its whole counter
    [InlineData("k", 10.0, "k", 10.0, 0.0)]        // the same value again
    [InlineData("k", 10.0, "k", 12.0, 2.0)]
    [InlineData("k", 10.0, "k", 8.0, 0.0)]         // backwards without a new process: nothing
    [InlineData("k", 10.0, "k2", 3.0, 3.0)]        // a new process counts from 0
    public void Added_CountsGrowthOfTheSameProcessOnly(string? countedKey, double counted, string key, double seconds, double expected) =>
        Assert.Equal(expected, Kumo.Server.Monitoring.MeasuredUsage.Added(countedKey, counted, key, seconds));

    [Fact]
    public void Share_IsTheOverlappedPartOfTheSampledSpan()
    {
        var t = new DateTimeOffset(2026, 1, 1, 10, 0, 0, TimeSpan.Zero);

        Assert.Equal(1, Kumo.Server.Accounting.UsageService.Share(t, t.AddMinutes(50), t.AddHours(-1), t.AddHours(1)));
        Assert.Equal(0.5, Kumo.Server.Accounting.UsageService.Share(t, t.AddMinutes(40), t.AddMinutes(20), t.AddHours(1)), 6);
        Assert.Equal(0, Kumo.Server.Accounting.UsageService.Share(t, t.AddMinutes(40), t.AddHours(1), t.AddHours(2)));
        Assert.Equal(1, Kumo.Server.Accounting.UsageService.Share(t, t, t, t.AddSeconds(1)));
    }

    internal static async Task<double> CpuSecondsAsync(HttpClient client) =>
        (await client.GetFromJsonAsync<UsageRecord[]>("/api/v1/usage", Problems.Json))!.Sum(r => r.CpuSeconds);

    internal static async Task<string> CreateRunningAsync(HttpClient client, string name)
    {
        var create = await client.PostAsync("/api/v1/instances", JsonContent.Create(new InstancesPost { Name = name }, options: Problems.Json));
        Assert.Equal(HttpStatusCode.Accepted, create.StatusCode);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while ((await client.GetFromJsonAsync<Instance>($"/api/v1/instances/{name}", Problems.Json))!.State != InstanceStates.Running)
        {
            Assert.True(DateTime.UtcNow < deadline, $"instance {name} did not become running");
            await Task.Delay(20);
        }
        return (await client.GetFromJsonAsync<Instance>($"/api/v1/instances/{name}", Problems.Json))!.Id;
    }

    internal static MetricsReport Report(NodeSample node, params GuestSample[] guests)
    {
        var r = new MetricsReport { Node = node, IntervalMs = 5000 };
        r.Guests.AddRange(guests);
        return r;
    }

    internal static NodeSample Node(double busy, double idle) => new()
    {
        CpuBusySeconds = busy,
        CpuIdleSeconds = idle,
        Cpus = 2,
        MemoryTotalBytes = 8 * ByteSize.GiB,
        MemoryAvailableBytes = 6 * ByteSize.GiB,
        DiskTotalBytes = 100 * ByteSize.GiB,
        DiskFreeBytes = 40 * ByteSize.GiB,
        NetRxBytes = 5000,
        NetTxBytes = 7000,
    };

    internal static GuestSample Guest(string id, string key, double cpu, long rss) => new()
    {
        InstanceId = id,
        ProcessKey = key,
        CpuSeconds = cpu,
        MemoryRssBytes = rss,
        DiskAllocatedBytes = 10 * ByteSize.MiB,
        DiskReadBytes = 4096,
        DiskWriteBytes = 8192,
    };

    /// <summary>Runs Prometheus's own checker (Debian package prometheus, installed by scripts/install-deps.sh --test).</summary>
    internal static async Task<(int Exit, string Output)> PromtoolAsync(string exposition)
    {
        var psi = new ProcessStartInfo("promtool", ["check", "metrics"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        await p.StandardInput.WriteAsync(exposition);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout + await stderr);
    }
}

/// <summary>Measured CPU across kumod restarts: its own kumod, because the restart hands the state dir to a new one.</summary>
public sealed class MeasuredUsageRestartTests
{
    [Fact]
    public async Task MeasuredCpu_CountsEachSecondOnce_AcrossRepeatsAndGuestRestarts_AndSurvivesKumodRestart()
    {
        var first = await TestServer.StartAsync();
        var agent = await FakeAgent.StartAsync(first, "node-a");
        using var alice = first.ClientFor(await first.AddUserAsync("alice", "alice-password"));
        var id = await MetricsTests.CreateRunningAsync(alice, "web");

        await agent.ReportMetricsAsync(MetricsTests.Report(MetricsTests.Node(1, 1), MetricsTests.Guest(id, "boot/100/5", cpu: 10, rss: 1)));
        await agent.ReportMetricsAsync(MetricsTests.Report(MetricsTests.Node(1, 1), MetricsTests.Guest(id, "boot/100/5", cpu: 10, rss: 1)));   // the same report again
        await agent.ReportMetricsAsync(MetricsTests.Report(MetricsTests.Node(1, 1), MetricsTests.Guest(id, "boot/100/5", cpu: 15, rss: 1)));
        Assert.Equal(15, await MetricsTests.CpuSecondsAsync(alice));

        // kumod restarts; the agent (same guest process) reconnects and reports the same counter again.
        await agent.DisposeAsync();
        await using var server = await first.RestartAsync();
        await using var again = await FakeAgent.StartAsync(server, "node-a");
        using var alice2 = server.ClientFor(await server.LoginAsync("alice", "alice-password"));
        await again.ReportMetricsAsync(MetricsTests.Report(MetricsTests.Node(1, 1), MetricsTests.Guest(id, "boot/100/5", cpu: 15, rss: 1)));
        Assert.Equal(15, await MetricsTests.CpuSecondsAsync(alice2));
        await again.ReportMetricsAsync(MetricsTests.Report(MetricsTests.Node(1, 1), MetricsTests.Guest(id, "boot/100/5", cpu: 16, rss: 1)));
        // The guest restarted: a new process whose counter started again at 0.
        await again.ReportMetricsAsync(MetricsTests.Report(MetricsTests.Node(1, 1), MetricsTests.Guest(id, "boot/200/9", cpu: 2, rss: 1)));

        Assert.Equal(18, await MetricsTests.CpuSecondsAsync(alice2));
    }
}
