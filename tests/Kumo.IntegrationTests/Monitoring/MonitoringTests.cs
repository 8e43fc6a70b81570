using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Monitoring;

/// <summary>A real TCG guest sampled by the real agent inside an all-in-one kumod (sampling every second).</summary>
[Trait("Category", "Slow")]
public sealed class MonitoringTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public async Task RunningGuest_HasCpuAndMemorySeries_TopListsIt_AndMeasuredCpuSurvivesAKumodCrashWithoutDoubleCounting()
    {
        await using var env = await KumoEnvironment.StartAsync(true, "--metrics-interval-seconds", "1");
        var op = await env.CreateAsync("mon1");
        Assert.True(op.Status == OperationStatuses.Succeeded, $"{op.Error}\n{env.Diagnostics()}");

        // Prometheus exposition: named per-guest CPU and memory series with non-zero values, accepted by promtool.
        string text = "";
        await KumoEnvironment.WaitUntilAsync(async () =>
        {
            text = await env.Api.Http.GetStringAsync("/metrics");
            return Value(text, "kumo_instance_cpu_seconds_total", "mon1") > 0 && Value(text, "kumo_instance_memory_rss_bytes", "mon1") > 0;
        }, TimeSpan.FromSeconds(90), "non-zero CPU and memory series of mon1");
        Assert.Contains("kumo_node_cpu_seconds_total{node=\"local\",mode=\"busy\"}", text);
        var (exit, promtool) = await PromtoolAsync(text);
        Assert.True(exit == 0, $"promtool check metrics: {promtool}\n{text}");

        var top = await env.CliAsync("top", "--once");
        Assert.True(top.ExitCode == 0, top.Err);
        Assert.Contains("mon1", top.Out);
        Assert.Contains("local", top.Out);

        // The agent's sampler, run here against the same guest: it sees it, and what one sample costs (for the README).
        var driver = new Kumo.Agent.Qemu.QemuDriver(Path.Combine(env.StateDir, "agent"), "tcg",
            Microsoft.Extensions.Logging.Abstractions.NullLogger<Kumo.Agent.Qemu.QemuDriver>.Instance);
        var sampler = new Kumo.Agent.Metrics.MetricsReporter(driver, new Kumo.Agent.AgentOptions { NodeName = "local", StateDir = Path.Combine(env.StateDir, "agent") },
            Microsoft.Extensions.Logging.Abstractions.NullLogger<Kumo.Agent.Metrics.MetricsReporter>.Instance);
        const int Samples = 50;
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var wall = Stopwatch.StartNew();
        for (var i = 0; i < Samples; i++)
        {
            var sample = await sampler.SampleAsync("n", CancellationToken.None);
            Assert.True(Assert.Single(sample.Guests).CpuSeconds > 0);
        }
        var cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalMilliseconds / Samples;
        output.WriteLine($"one sample (node + 1 guest, QMP included): {wall.Elapsed.TotalMilliseconds / Samples:0.00} ms wall, {cpuMs:0.00} ms CPU");

        double before = 0;
        await KumoEnvironment.WaitUntilAsync(async () => (before = await CpuSecondsAsync(env)) > 0, TimeSpan.FromSeconds(60), "measured CPU-seconds");

        // kill -9 of kumod (and its agent); the guest keeps running and is adopted again with the same counters.
        env.Server!.Crash();
        await env.StartServerAsync();
        double after = 0;
        await KumoEnvironment.WaitUntilAsync(async () => (after = await CpuSecondsAsync(env)) > before, TimeSpan.FromSeconds(90),
            "measured CPU-seconds to grow after the restart");

        // Never more than the guest's QEMU process really used (read after the usage): nothing was counted twice.
        var pid = Assert.Single(env.QemuPids());
        var stat = await File.ReadAllTextAsync($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var used = (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
        Assert.True(after <= used, $"usage says {after} CPU-seconds, the process used {used}");
        await env.DoAsync("mon1", "force-delete");
    }

    private static async Task<double> CpuSecondsAsync(KumoEnvironment env) =>
        (await env.Api.Http.GetFromJsonAsync<UsageRecord[]>("/api/v1/usage", ApiClient.Json))!.Sum(r => r.CpuSeconds);

    /// <summary>The value of a guest's series in the exposition text; 0 when absent.</summary>
    private static double Value(string text, string metric, string instance)
    {
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(metric + "{", StringComparison.Ordinal) && line.Contains($"instance_name=\"{instance}\"", StringComparison.Ordinal))
                return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
        }
        return 0;
    }

    private static async Task<(int Exit, string Output)> PromtoolAsync(string exposition)
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
