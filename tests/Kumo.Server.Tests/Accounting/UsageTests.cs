using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Accounting;

/// <summary>Allocated usage: intervals opened and closed as instances are shown running, summed by GET /usage.</summary>
public sealed class UsageTests : ServerWithNode
{
    [Fact]
    public async Task RunningInstance_IsChargedItsCpusTimesTheMeasuredInterval_AndStoppingClosesTheInterval()
    {
        using var alice = Server.ClientFor(await Server.AddUserAsync("alice", "alice-password"));
        var clock = Stopwatch.StartNew();
        var create = await alice.PostAsync("/api/v1/instances",
            JsonContent.Create(new InstancesPost { Name = "web", Cpus = 3, Memory = "512M" }, options: Problems.Json));
        Assert.Equal(HttpStatusCode.Accepted, create.StatusCode);
        await WaitForStateAsync(alice, "web", InstanceStates.Running);
        var runningSeen = clock.Elapsed;
        await Task.Delay(TimeSpan.FromSeconds(2));
        var stopAsked = clock.Elapsed;
        Assert.Equal(HttpStatusCode.Accepted, (await alice.PostAsync("/api/v1/instances/web/stop", null)).StatusCode);
        await WaitForStateAsync(alice, "web", InstanceStates.Stopped);
        var stoppedSeen = clock.Elapsed;

        var open = await Server.Database.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM usage_intervals WHERE ended_at IS NULL"), CancellationToken.None);
        Assert.Equal(0, open);
        var usage = await alice.GetFromJsonAsync<UsageRecord[]>("/api/v1/usage", Problems.Json);
        var row = Assert.Single(usage!);
        Assert.Equal(("alice", "alice"), (row.User, row.Project));
        // Our clock brackets the interval kumod charges: it began after the create was sent and before we saw
        // "running"; it ended after we asked to stop and before we saw "stopped". Charged vCPU-seconds must lie within
        // that bracket × 3 vCPUs, give or take 5%. (Comparing with "running seen" to "stopped seen" alone failed once
        // under CI load: our polls saw "running" later than kumod recorded it, by more than 5% of a 2 s interval.)
        var shortest = (stopAsked - runningSeen).TotalSeconds;
        var longest = stoppedSeen.TotalSeconds;
        Assert.InRange(row.VcpuSeconds, shortest * 3 * 0.95, longest * 3 * 1.05);
        Assert.Equal(row.RunningSeconds * 3, row.VcpuSeconds, 6);
        Assert.Equal(row.RunningSeconds * 512, row.MemoryMibSeconds, 6);
    }

    [Fact]
    public async Task AnotherUsersUsage_IsNotVisible()
    {
        await Server.AddUserAsync("alice", "alice-password");
        using var bob = Server.ClientFor(await Server.AddUserAsync("bob", "bob-password"));
        var now = DateTimeOffset.UtcNow;
        await InsertAsync("alice", "alice", 1, 0, 0, now.AddHours(-2), now.AddHours(-1));
        await InsertAsync("bob", "bob", 1, 0, 0, now.AddHours(-2), now.AddHours(-1));

        Assert.Equal(HttpStatusCode.NotFound, (await bob.GetAsync("/api/v1/usage?user=alice")).StatusCode);
        var own = await bob.GetFromJsonAsync<UsageRecord[]>("/api/v1/usage", Problems.Json);
        Assert.Equal(["bob"], own!.Select(r => r.User));
        var all = await Server.Client.GetFromJsonAsync<UsageRecord[]>("/api/v1/usage", Problems.Json);
        Assert.Equal(["alice", "bob"], all!.Select(r => r.User));
        var onlyAlice = await Server.Client.GetFromJsonAsync<UsageRecord[]>("/api/v1/usage?user=alice", Problems.Json);
        Assert.Equal(["alice"], onlyAlice!.Select(r => r.User));
    }

    [Fact]
    public async Task FromAndTo_ClipTheIntervals()
    {
        await Server.AddUserAsync("alice", "alice-password");
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        // 10:00-12:00 with 2 vCPU, 4 GiB memory, 10 GiB disk; 13:00-open with 1 vCPU; one outside the period.
        await InsertAsync("alice", "alice", 2, 4 * ByteSize.GiB, 10 * ByteSize.GiB, t0.AddHours(10), t0.AddHours(12));
        await InsertAsync("alice", "alice", 1, 0, 0, t0.AddHours(13), null);
        await InsertAsync("alice", "alice", 8, 0, 0, t0.AddHours(1), t0.AddHours(2));

        var from = Uri.EscapeDataString("2026-01-01T11:00:00Z");
        var to = Uri.EscapeDataString("2026-01-01T14:00:00Z");
        var usage = await Server.Client.GetFromJsonAsync<UsageRecord[]>($"/api/v1/usage?from={from}&to={to}&project=alice", Problems.Json);

        var row = Assert.Single(usage!);
        Assert.Equal(2 * 3600.0, row.RunningSeconds, 6);
        Assert.Equal(2 * 3600.0 + 3600, row.VcpuSeconds, 6);
        Assert.Equal(3600.0 * 4096, row.MemoryMibSeconds, 6);
        Assert.Equal(10.0, row.DiskGibHours, 6);
        Assert.Equal((t0.AddHours(11), t0.AddHours(14)), (row.From, row.To));
    }

    [Theory]
    [InlineData("from=yesterday", "from")]
    [InlineData("to=2026-13-45", "to")]
    [InlineData("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from")]
    public async Task BadDates_Return400Validation(string query, string field)
    {
        var problem = await (await Server.Client.GetAsync("/api/v1/usage?" + query)).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
        Assert.Equal([field], problem.Errors!.Keys);
    }

    private Task<int> InsertAsync(string user, string project, int cpus, long memory, long disk, DateTimeOffset start, DateTimeOffset? end) =>
        Server.Database.WriteAsync(ctx => ctx.Connection.Execute(
            """
            INSERT INTO usage_intervals (instance_id, instance_name, owner_id, project, cpus, memory_bytes, disk_bytes, started_at, ended_at)
            VALUES ('synthetic', 'synthetic', (SELECT id FROM users WHERE name = @user), @project, @cpus, @memory, @disk, @start, @end)
            """,
            new { user, project, cpus, memory, disk, start = Kumo.Server.Storage.Json.At(start), end = end is null ? null : Kumo.Server.Storage.Json.At(end.Value) },
            ctx.Transaction), CancellationToken.None);

    private static async Task WaitForStateAsync(HttpClient client, string name, string state)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            var instance = await client.GetFromJsonAsync<Instance>($"/api/v1/instances/{name}", Problems.Json);
            if (instance!.State == state) return;
            Assert.True(DateTime.UtcNow < deadline, $"instance {name} is {instance.State}, not {state}");
            await Task.Delay(20);
        }
    }
}
