using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Clusters;

public sealed class ReservationTests : ClusterTestBase
{
    [Fact]
    public async Task AFutureWindow_HoldsNothingUntilItOpens_ThenTheClusterRuns_IsWarnedAndIsReleasedAtTheEnd()
    {
        var now = DateTimeOffset.UtcNow;
        var op = await WaitAsync(await CreateAsync(new ClustersPost { Name = "lab", Nodes = 1, NodeMemory = "64M", Start = now.AddSeconds(4), End = now.AddSeconds(12) }));

        Assert.Contains("reserved from", op.Message, StringComparison.Ordinal);
        var scheduled = await GetAsync("lab");
        Assert.Equal((ClusterStates.Scheduled, 0), (scheduled.State, scheduled.Members.Count));
        Assert.Equal(0L, await Server.CountInstancesAsync());
        var listed = Assert.Single((await Server.Client.GetFromJsonAsync<List<Reservation>>("/api/v1/reservations", Problems.Json))!);
        Assert.Equal(("lab", "node-a", 2, 256 * ByteSize.MiB + 64 * ByteSize.MiB), (listed.Name, listed.Node, listed.Cpus, listed.MemoryBytes));

        var running = await PollAsync("lab", c => c.State == ClusterStates.Ready);
        Assert.Equal(2, running.Members.Count);

        var ended = await PollAsync("lab", c => c.State == ClusterStates.Ended);
        Assert.Equal(["reserved", "started", "ready", "ending-soon", "ending", "ended"], ended.Events.Select(e => e.Kind));
        Assert.Contains("save your work", ended.Events.Single(e => e.Kind == "ending-soon").Message, StringComparison.Ordinal);
        Assert.Empty(ended.Members);
        Assert.Equal(0L, await Server.CountInstancesAsync());
        using var c = Server.Database.Open();
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM networks"));
        Assert.Equal(ClusterStates.Ended, (await Server.Client.GetFromJsonAsync<Reservation>("/api/v1/reservations/lab", Problems.Json))!.State);
    }

    [Fact]
    public async Task AnOverlappingWindowThatDoesNotFit_IsRefusedNamingTheConflict_WhileABackToBackOneIsAdmitted()
    {
        var t0 = DateTimeOffset.UtcNow.AddHours(1);
        // 40 GiB each on a 64 GiB node: two cannot overlap.
        ClustersPost Big(string name, int fromHour, int toHour) => new()
        {
            Name = name,
            Nodes = 1,
            FrontendMemory = "30G",
            NodeMemory = "10G",
            Start = t0.AddHours(fromHour),
            End = t0.AddHours(toHour),
        };
        await WaitAsync(await CreateAsync(Big("first", 0, 2)));

        var problem = await (await PostAsync(Big("second", 1, 3))).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.ReservationConflict);
        Assert.Contains("conflicts with 'first'", problem.Detail, StringComparison.Ordinal);
        Assert.Contains("40G of 64G already reserved", problem.Detail, StringComparison.Ordinal);
        await WaitAsync(await CreateAsync(Big("third", 2, 4)));

        var names = (await Server.Client.GetFromJsonAsync<List<Reservation>>("/api/v1/reservations", Problems.Json))!.Select(r => r.Name);
        Assert.Equal(["first", "third"], names);
        using var c = Server.Database.Open();
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM networks WHERE name LIKE 'second%'"));
    }

    [Fact]
    public async Task DeletingAScheduledReservation_RemovesItAndItsNetworksAtOnce()
    {
        var t0 = DateTimeOffset.UtcNow.AddHours(1);
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "later", Nodes = 2, Start = t0, End = t0.AddHours(1) }));

        using var response = await Server.Client.DeleteAsync("/api/v1/clusters/later");
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        await WaitAsync((await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        Assert.Empty((await Server.Client.GetFromJsonAsync<List<Reservation>>("/api/v1/reservations", Problems.Json))!);
        using var c = Server.Database.Open();
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM networks"));
    }
}
