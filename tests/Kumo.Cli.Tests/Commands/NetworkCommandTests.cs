using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Cli.Tests.Commands;

public sealed class NetworkCommandTests
{
    private static Network Lan(bool nat = false) => new()
    {
        Id = "01JNET",
        Name = "lab-net",
        Project = "alice",
        Subnet = "10.42.0.0/24",
        Gateway = "10.42.0.1",
        Nat = nat,
        DnsDomain = "lab.internal",
    };

    [Fact]
    public async Task Create_SendsSubnetNatAndDomain_AndPrintsTheNetwork()
    {
        NetworksPost? sent = null;
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/networks", (NetworksPost post) =>
        {
            sent = post;
            return Results.Json(Lan(nat: true), FakeKumod.Json, statusCode: 201);
        }));

        var result = await CliRunner.RunAsync(kumod.Url, "network", "create", "lab-net", "--subnet", "10.42.0.0/24", "--nat", "--dns-domain", "lab.internal");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(("lab-net", "10.42.0.0/24", true, "lab.internal"), (sent!.Name, sent.Subnet, sent.Nat, sent.DnsDomain));
        Assert.Contains("10.42.0.1", result.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("10.42.0.1/24", "host bits")]
    [InlineData("banana", "CIDR form")]
    [InlineData("10.42.0.0/33", "prefix length")]
    public async Task Create_WithABadSubnet_FailsWithOneLineAndCallsNothing(string subnet, string reason)
    {
        var called = false;
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/networks", () =>
        {
            called = true;
            return Results.Json(Lan(), FakeKumod.Json, statusCode: 201);
        }));

        var result = await CliRunner.RunAsync(kumod.Url, "network", "create", "lab-net", "--subnet", subnet);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(reason, result.Err, StringComparison.Ordinal);
        Assert.Single(result.Err.Trim().Split('\n'));
        Assert.False(called);
    }

    [Fact]
    public async Task Delete_InUse_PrintsKumodsReasonAndFails()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapDelete("/api/v1/networks/{name}", (string name) =>
            FakeKumod.Problem(409, ProblemTypes.NetworkInUse, "The network is in use", $"network '{name}' is used by instance 'a'; delete them first")));

        var result = await CliRunner.RunAsync(kumod.Url, "network", "delete", "lab-net");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("used by instance 'a'", result.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task List_ShowsEachNetworkAsARow()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapGet("/api/v1/networks", () => FakeKumod.Ok(new[] { Lan() })));

        var result = await CliRunner.RunAsync(kumod.Url, "network", "list");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("lab-net", result.Out, StringComparison.Ordinal);
        Assert.Contains("10.42.0.0/24", result.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task VmCreate_WithNetwork_SendsTheNetworkName()
    {
        InstancesPost? sent = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapPost("/api/v1/instances", (InstancesPost post) =>
            {
                sent = post;
                return Results.Json(FakeKumod.Operation("01JOP", OperationStatuses.Succeeded, "ready"), FakeKumod.Json, statusCode: 202);
            });
            app.MapGet("/api/v1/operations/{id}/events", (HttpContext c) =>
                FakeKumod.WriteEventsAsync(c, [FakeKumod.Event("01JOP", OperationStatuses.Succeeded, "ready")]));
            app.MapGet("/api/v1/operations/{id}", () => FakeKumod.Ok(FakeKumod.Operation("01JOP", OperationStatuses.Succeeded, "ready")));
            app.MapGet("/api/v1/instances/{name}", (string name) => FakeKumod.Ok(FakeKumod.Instance(name)));
        });

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "a", "--network", "lab-net");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("lab-net", sent!.Network);
    }
}
