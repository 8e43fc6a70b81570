using System.Diagnostics;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Kumo.IntegrationTests.Accounting;

/// <summary>An all-in-one kumod whose agent samples its guests every second, so measured usage moves quickly.</summary>
public sealed class AccountingKumo : IAsyncLifetime
{
    public KumoEnvironment Env { get; private set; } = null!;

    public async Task InitializeAsync() => Env = await KumoEnvironment.StartAsync(true, "--metrics-interval-seconds", "1");

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

/// <summary>
/// Accounting against real TCG guests: allocated usage checked against the test's own clock, and measured CPU-seconds
/// (the QEMU process's CPU time, reported by the agent) told apart between a busy and an idle guest. Each test acts as
/// users of its own, so the usage API's per-user rows are per test.
/// </summary>
[Trait("Category", "Slow")]
public sealed class UsageAccuracyTests(AccountingKumo fixture, ITestOutputHelper output) : IClassFixture<AccountingKumo>
{
    private KumoEnvironment Env => fixture.Env;

    [Fact]
    public async Task RealVmRunForAMeasuredInterval_IsChargedItsVcpusAndMemoryTimesThatInterval()
    {
        using var carol = await UserAsync("carol");
        var clock = Stopwatch.StartNew();
        var (_, op, problem) = await carol.CreateAsync(new { name = "acct1", image = "tiny", cpus = 2, memory = "256M", disk = "64M" });
        Assert.True(op is not null, problem?.Detail);
        await WaitStateAsync(carol, "acct1", InstanceStates.Running);
        var runningSeen = clock.Elapsed;
        // The interval under test, on our clock; nothing waits for a state here.
        await Task.Delay(TimeSpan.FromSeconds(20));
        var stopAsked = clock.Elapsed;
        var (_, stop, stopProblem) = await carol.ActAsync("acct1", "stop");
        Assert.True(stop is not null, stopProblem?.Detail);
        await WaitStateAsync(carol, "acct1", InstanceStates.Stopped);
        var stoppedSeen = clock.Elapsed;

        var row = Assert.Single(await UsageAsync(carol));
        // kumod opens the interval when it records "running" (after we sent the create, before we saw running) and
        // closes it when it records the stop (after we asked, before we saw stopped): the charge lies within that
        // bracket × size, give or take 5%.
        var shortest = (stopAsked - runningSeen).TotalSeconds;
        var longest = stoppedSeen.TotalSeconds;
        output.WriteLine($"bracket {shortest:0.000}..{longest:0.000} s; charged {row.RunningSeconds:0.000} s, {row.VcpuSeconds:0.000} vCPU-s, "
            + $"{row.MemoryMibSeconds:0.0} MiB-s, {row.DiskGibHours:0.000000} GiB-h");
        Assert.InRange(row.VcpuSeconds, shortest * 2 * 0.95, longest * 2 * 1.05);
        Assert.InRange(row.MemoryMibSeconds, shortest * 256 * 0.95, longest * 256 * 1.05);
        Assert.Equal(row.RunningSeconds / 3600 * 64 / 1024, row.DiskGibHours, 9);
        await carol.ActAsync("acct1", "force-delete");
    }

    [Fact]
    public async Task GuestSpinningItsCpu_IsMeasuredWellAboveAnIdleGuest_OverTheSameWindow()
    {
        using var spinner = await UserAsync("spinner");
        using var idler = await UserAsync("idler");
        var created = await Task.WhenAll(
            spinner.CreateAsync(new { name = "spin1", image = "tiny", cpus = 1, memory = "128M", disk = "64M" }),
            idler.CreateAsync(new { name = "idle1", image = "tiny", cpus = 1, memory = "128M", disk = "64M" }));
        Assert.All(created, c => Assert.True(c.Operation is not null, c.Problem?.Detail));
        var spin = await WaitStateAsync(spinner, "spin1", InstanceStates.Running);
        var idle = await WaitStateAsync(idler, "idle1", InstanceStates.Running);

        // Both consoles are used the same way; only one starts a busy loop (detached, so it outlives the console; in a
        // subshell, as the console runner appends "; echo MARKER" and "&;" is a syntax error).
        await ShellAsync(spin, "(setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &)");
        await ShellAsync(idle, "true");

        // One usage read holds both users' rows: the same window for both. The deltas between two reads are the
        // CPU-seconds the agent's reports added in between, whatever the guests used while booting.
        var (spin0, idle0) = await MeasuredAsync();
        var window = Stopwatch.StartNew();
        double spinUsed = 0, idleUsed = 0;
        await KumoEnvironment.WaitUntilAsync(async () =>
        {
            var (s, i) = await MeasuredAsync();
            (spinUsed, idleUsed) = (s - spin0, i - idle0);
            return spinUsed >= 10 && idleUsed > 0;
        }, TimeSpan.FromSeconds(180), "the spinning guest to be measured at 10 CPU-seconds, and the idle one above 0");
        var seconds = window.Elapsed.TotalSeconds;
        output.WriteLine($"over {seconds:0.0} s: spinning guest {spinUsed:0.00} CPU-s, idle guest {idleUsed:0.00} CPU-s");

        // An idle guest still costs its QEMU process something (timer ticks under TCG, the agent's QMP queries), but
        // that grows with wall time, not with the guest's work; a third of the spinner is far above what we saw.
        Assert.True(spinUsed >= 3 * idleUsed && spinUsed - idleUsed >= 5,
            $"spinning {spinUsed:0.00} CPU-s vs idle {idleUsed:0.00} CPU-s over {seconds:0.0} s");
        // Seconds, not ticks: no process can use more than every host CPU for the whole window (give or take a
        // report interval at each end).
        Assert.True(spinUsed <= (seconds + 2) * Environment.ProcessorCount, $"{spinUsed:0.00} CPU-s in {seconds:0.0} s");

        await Task.WhenAll(spinner.ActAsync("spin1", "force-delete"), idler.ActAsync("idle1", "force-delete"));
    }

    /// <summary>A new user and a REST client logged in as them (their personal project is theirs alone).</summary>
    private async Task<ApiClient> UserAsync(string name)
    {
        var token = await Env.AddUserAsync(name);
        var client = new ApiClient(new Uri(Env.Url), Env.CaPath);
        client.Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    private static Task<Instance?> WaitStateAsync(ApiClient client, string name, string state) =>
        ApiClient.EventuallyAsync(() => client.GetAsync(name), i => i?.State == state, TimeSpan.FromSeconds(120), $"{name} to be {state}");

    private static async Task<UsageRecord[]> UsageAsync(ApiClient client) =>
        (await client.Http.GetFromJsonAsync<UsageRecord[]>("/api/v1/usage", ApiClient.Json))!;

    /// <summary>Measured CPU-seconds of the spinner's and the idler's usage rows, from one read as admin.</summary>
    private async Task<(double Spinner, double Idler)> MeasuredAsync()
    {
        var rows = await UsageAsync(Env.Api);
        return (rows.Where(r => r.User == "spinner").Sum(r => r.CpuSeconds), rows.Where(r => r.User == "idler").Sum(r => r.CpuSeconds));
    }

    private async Task ShellAsync(Instance? vm, string command) =>
        await SerialConsole.RunAsync(Path.Combine(Env.LocalInstancesDir, vm!.Id, "serial.sock"), command, TimeSpan.FromSeconds(60));
}
