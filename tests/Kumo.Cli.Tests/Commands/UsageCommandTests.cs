using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Cli.Tests.Commands;

public sealed class UsageCommandTests
{
    [Fact]
    public async Task Usage_AsCsv_PrintsAHeaderThenOneLinePerRecord_PassingTheFilters()
    {
        string? query = null;
        var from = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var to = new DateTimeOffset(2026, 2, 1, 0, 0, 0, TimeSpan.Zero);
        await using var kumod = await FakeKumod.StartAsync(app => app.MapGet("/api/v1/usage", (HttpRequest request) =>
        {
            query = request.QueryString.Value;
            return FakeKumod.Ok(new[]
            {
                new UsageRecord { User = "alice", Project = "alice", From = from, To = to, RunningSeconds = 7200, VcpuSeconds = 14400, MemoryMibSeconds = 3686400, DiskGibHours = 20, CpuSeconds = 812.25 },
                new UsageRecord { User = "alice", Project = "lab,1", From = from, To = to, RunningSeconds = 1.5, VcpuSeconds = 1.5, MemoryMibSeconds = 96, DiskGibHours = 0.0004 },
            });
        }));

        var result = await CliRunner.RunAsync(kumod.Url, "usage", "--user", "alice", "--from", "2026-01-01", "--to", "2026-02-01", "-o", "csv");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("?user=alice&from=2026-01-01&to=2026-02-01", query);
        Assert.Equal(
            "user,project,from,to,running_seconds,vcpu_seconds,memory_mib_seconds,disk_gib_hours,cpu_seconds\n"
            + "alice,alice,2026-01-01T00:00:00Z,2026-02-01T00:00:00Z,7200,14400,3686400,20,812.25\n"
            + "alice,\"lab,1\",2026-01-01T00:00:00Z,2026-02-01T00:00:00Z,1.5,1.5,96,0,0\n",
            result.Out);
        Assert.Empty(result.Err);
    }
}
