using System.Net;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Clusters;

/// <summary>A single VM reserved for a window: POST /instances with start and end, on the same calendar as clusters.</summary>
public sealed class VmReservationTests : ClusterTestBase
{
    private Task<HttpResponseMessage> ReserveAsync(InstancesPost body) => Server.CreateAsync(body);

    private async Task<Reservation?> ReservationAsync(string name)
    {
        using var response = await Server.Client.GetAsync($"/api/v1/reservations/{name}");
        return response.StatusCode == HttpStatusCode.NotFound ? null : (await response.Content.ReadFromJsonAsync<Reservation>(Problems.Json))!;
    }

    private async Task<Reservation> PollReservationAsync(string name, Func<Reservation, bool> done)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        var r = await ReservationAsync(name);
        while ((r is null || !done(r)) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            r = await ReservationAsync(name);
        }
        Assert.True(r is not null && done(r), $"reservation {name} is {r?.State ?? "gone"}");
        return r!;
    }

    [Fact]
    public async Task AFutureWindow_CreatesNoVmUntilItOpens_ThenTheVmRunsWithItsOwnName_AndIsDeletedAtTheEnd()
    {
        var now = DateTimeOffset.UtcNow;
        using var response = await ReserveAsync(new InstancesPost
        {
            Name = "exam",
            Memory = "96M",
            Cpus = 2,
            Labels = new Dictionary<string, string> { ["course"] = "os" },
            Start = now.AddSeconds(3),
            End = now.AddSeconds(10),
        });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var op = (await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
        Assert.Equal(("reserve", OperationStatuses.Succeeded), (op.Kind, op.Status));
        Assert.Contains("reserved from", op.Message, StringComparison.Ordinal);

        var scheduled = (await ReservationAsync("exam"))!;
        Assert.Equal((ReservationKinds.Vm, ClusterStates.Scheduled, "node-a", 2, 96 * ByteSize.MiB),
            (scheduled.Kind, scheduled.State, scheduled.Node, scheduled.Cpus, scheduled.MemoryBytes));
        Assert.Equal(0L, await Server.CountInstancesAsync());
        // A VM reservation is not a cluster.
        using (var cluster = await Server.Client.GetAsync("/api/v1/clusters/exam")) Assert.Equal(HttpStatusCode.NotFound, cluster.StatusCode);
        Assert.Empty((await Server.Client.GetFromJsonAsync<List<Cluster>>("/api/v1/clusters", Problems.Json))!);

        await PollReservationAsync("exam", r => r.State == ClusterStates.Ready);
        var vm = (await Server.Client.GetFromJsonAsync<Instance>("/api/v1/instances/exam", Problems.Json))!;
        Assert.Equal((2, 96 * ByteSize.MiB, "node-a", "os", "exam"), (vm.Cpus, vm.MemoryBytes, vm.Node, vm.Labels["course"], vm.Labels["kumo.reservation"]));

        var ended = await PollReservationAsync("exam", r => r.State == ClusterStates.Ended);
        Assert.Equal(["reserved", "started", "ready", "ending-soon", "ending", "ended"], ended.Events.Select(e => e.Kind));
        Assert.Equal(0L, await Server.CountInstancesAsync());
    }

    [Fact]
    public async Task AnOpenWindow_CreatesTheVmAtOnce_AndTheOperationEndsWhenItRuns()
    {
        using var response = await ReserveAsync(new InstancesPost { Name = "now", Memory = "64M", End = DateTimeOffset.UtcNow.AddHours(2) });
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, await response.Content.ReadAsStringAsync());
        var op = await WaitAsync((await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);
        Assert.Equal("the VM is running", op.Message);
        Assert.Equal(InstanceStates.Running, (await Server.Client.GetFromJsonAsync<Instance>("/api/v1/instances/now", Problems.Json))!.State);
        Assert.Equal(ClusterStates.Ready, (await ReservationAsync("now"))!.State);
    }

    [Fact]
    public async Task APlainDeleteOfTheReservedVm_IsRefusedNamingTheReservation_AndDeletingTheReservationRemovesTheVm()
    {
        using (var r = await ReserveAsync(new InstancesPost { Name = "held", Memory = "64M", End = DateTimeOffset.UtcNow.AddHours(2) }))
            await WaitAsync((await r.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        var refused = await (await Server.Client.DeleteAsync("/api/v1/instances/held")).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.InvalidState);
        Assert.Contains("kumo reservation delete held", refused.Detail, StringComparison.Ordinal);

        using var deleted = await Server.Client.DeleteAsync("/api/v1/reservations/held");
        Assert.Equal(HttpStatusCode.Accepted, deleted.StatusCode);
        await WaitAsync((await deleted.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);
        Assert.Null(await ReservationAsync("held"));
        Assert.Equal(0L, await Server.CountInstancesAsync());
    }

    [Fact]
    public async Task AForcedDeleteOfTheReservedVm_EndsTheReservationAndKeepsItAsHistory()
    {
        using (var r = await ReserveAsync(new InstancesPost { Name = "gone", Memory = "64M", End = DateTimeOffset.UtcNow.AddHours(2) }))
            await WaitAsync((await r.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);

        using var deleted = await Server.Client.DeleteAsync("/api/v1/instances/gone?force=true");
        Assert.Equal(HttpStatusCode.Accepted, deleted.StatusCode);

        var ended = await PollReservationAsync("gone", r => r.State == ClusterStates.Ended);
        Assert.Contains("deleted before the window closed", ended.Events.Single(e => e.Kind == "ending").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AVmWindowThatOverlapsAClusterReservation_AndDoesNotFit_IsRefusedNamingIt()
    {
        var t0 = DateTimeOffset.UtcNow.AddHours(1);
        await WaitAsync(await CreateAsync(new ClustersPost { Name = "lab", Nodes = 1, FrontendMemory = "30G", NodeMemory = "30G", Start = t0, End = t0.AddHours(2) }));

        var problem = await (await ReserveAsync(new InstancesPost { Name = "big", Memory = "8G", Start = t0.AddHours(1), End = t0.AddHours(3) }))
            .AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.ReservationConflict);
        Assert.StartsWith("VM 'big' (1 vCPU, 8G)", problem.Detail, StringComparison.Ordinal);
        Assert.Contains("conflicts with 'lab'", problem.Detail, StringComparison.Ordinal);

        // After the cluster's window it fits.
        using var later = await ReserveAsync(new InstancesPost { Name = "big", Memory = "8G", Start = t0.AddHours(2), End = t0.AddHours(3) });
        Assert.Equal(HttpStatusCode.OK, later.StatusCode);
        var kinds = (await Server.Client.GetFromJsonAsync<List<Reservation>>("/api/v1/reservations", Problems.Json))!.Select(r => (r.Name, r.Kind));
        Assert.Equal([("lab", ReservationKinds.Cluster), ("big", ReservationKinds.Vm)], kinds);
    }

    [Fact]
    public async Task NamesAreShared_WithInstancesAndClusters()
    {
        using (var created = await Server.CreateAsync(new InstancesPost { Name = "taken", Memory = "64M", Stopped = true }))
            await WaitAsync((await created.Content.ReadFromJsonAsync<Operation>(Problems.Json))!);
        var t0 = DateTimeOffset.UtcNow.AddHours(1);
        var clash = await (await ReserveAsync(new InstancesPost { Name = "taken", Start = t0, End = t0.AddHours(1) }))
            .AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
        Assert.Contains("an instance named 'taken' already exists", clash.Detail, StringComparison.Ordinal);

        using (var r = await ReserveAsync(new InstancesPost { Name = "slot", Start = t0, End = t0.AddHours(1) })) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var cluster = await (await PostAsync(new ClustersPost { Name = "slot", Nodes = 1 })).AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
        Assert.Contains("a VM reservation named 'slot' already exists", cluster.Detail, StringComparison.Ordinal);
        var again = await (await ReserveAsync(new InstancesPost { Name = "slot", Start = t0.AddHours(5), End = t0.AddHours(6) }))
            .AssertProblemAsync(HttpStatusCode.Conflict, ProblemTypes.Conflict);
        Assert.Contains("a VM reservation named 'slot' already exists", again.Detail, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> BadRequests => new()
    {
        { """{"name":"x","start":"2030-01-01T00:00:00Z"}""", "end" },
        { """{"name":"x","start":"2030-01-01T02:00:00Z","end":"2030-01-01T01:00:00Z"}""", "end" },
        { """{"name":"x","start":"2020-01-01T00:00:00Z","end":"2030-01-01T01:00:00Z"}""", "start" },
        { """{"name":"x","type":"container","end":"2030-01-01T01:00:00Z"}""", "type" },
        { """{"name":"x","stopped":true,"end":"2030-01-01T01:00:00Z"}""", "stopped" },
        { """{"name":"x","memory":"1T5","end":"2030-01-01T01:00:00Z"}""", "memory" },
        { """{"name":"x","image":"no-such-image","end":"2030-01-01T01:00:00Z"}""", "image" },
        { """{"name":"x","network":"no-such-net","end":"2030-01-01T01:00:00Z"}""", "network" },
        { """{"name":"x","node":"no-such-node","end":"2030-01-01T01:00:00Z"}""", "node" },
        { """{"name":"x","sshKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMuEnd7/V0Cjn3D1RVNtLp4lCv/cC9FqShZnThNtpNk7 a@b"],"end":"2030-01-01T01:00:00Z"}""", "sshKeys" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task ABadReservation_IsRefusedByField_AndLeavesNothing(string body, string field)
    {
        using var response = await Server.Client.PostAsync("/api/v1/instances", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        var problem = await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
        Assert.True(problem.Errors?.ContainsKey(field) == true, $"errors: {string.Join(", ", problem.Errors?.Keys ?? [])}; detail: {problem.Detail}");
        Assert.Empty((await Server.Client.GetFromJsonAsync<List<Reservation>>("/api/v1/reservations", Problems.Json))!);
        using var c = Server.Database.Open();
        Assert.Equal(0L, c.ExecuteScalar<long>("SELECT count(*) FROM clusters"));
    }
}
