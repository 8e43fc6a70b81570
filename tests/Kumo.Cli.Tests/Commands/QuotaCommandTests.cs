using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using static Kumo.Cli.Tests.Commands.IdentityFakes;

namespace Kumo.Cli.Tests.Commands;

public sealed class QuotaCommandTests
{
    private static Quota Sample(string scope, string name) => new()
    {
        Scope = scope,
        Name = name,
        Limits = new QuotaLimits { Vms = 4, Containers = 8, Vcpus = 8, MemoryBytes = 8 * ByteSize.GiB, DiskBytes = null },
        Used = new QuotaLimits { Vms = 1, Containers = 0, Vcpus = 2, MemoryBytes = 256 * ByteSize.MiB, DiskBytes = ByteSize.GiB },
    };

    private static Task<FakeKumod> StartAsync(Action<QuotaPut>? onPut = null) => FakeKumod.StartAsync(app =>
    {
        app.MapGet("/api/v1/auth/whoami", () => FakeKumod.Ok(User()));
        app.MapGet("/api/v1/quotas/{scope}/{name}", (string scope, string name) => FakeKumod.Ok(Sample(scope, name)));
        app.MapPut("/api/v1/quotas/{scope}/{name}", (string scope, string name, QuotaPut body) =>
        {
            onPut?.Invoke(body);
            return FakeKumod.Ok(Sample(scope, name));
        });
    });

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToArray();

    [Fact]
    public async Task Show_DefaultsToYourself_WithUsageAndLimitsSideBySide()
    {
        await using var kumod = await StartAsync();

        var result = await CliRunner.RunAsync(kumod.Url, "quota", "show");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(["GET /api/v1/auth/whoami", "GET /api/v1/quotas/user/alice"], kumod.Requests);
        Assert.Equal(
        [
            "quota of user alice",
            "RESOURCE USED LIMIT",
            "vms 1 4",
            "containers 0 8",
            "vcpus 2 8",
            "memory 256M 8G",
            "disk 1G unlimited",
        ], Lines(result.Out));
    }

    [Theory]
    [InlineData(new[] { "--user", "bob" }, "GET /api/v1/quotas/user/bob")]
    [InlineData(new[] { "--project", "lab1" }, "GET /api/v1/quotas/project/lab1")]
    public async Task Show_ForAUserOrAProject_AsksForThatOne(string[] args, string request)
    {
        await using var kumod = await StartAsync();

        var result = await CliRunner.RunAsync(kumod.Url, ["quota", "show", .. args]);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(request, Assert.Single(kumod.Requests));
    }

    [Fact]
    public async Task Show_KumoProjectDoesNotTurnItIntoAProjectQuota()
    {
        await using var kumod = await StartAsync();

        var result = await CliRunner.RunAsync(["--url", kumod.Url.ToString(), "quota", "show"], new Dictionary<string, string> { ["KUMO_PROJECT"] = "lab1" });

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("GET /api/v1/quotas/user/alice", kumod.Requests[^1]);
    }

    [Fact]
    public async Task Set_SendsOnlyTheLimitsGiven()
    {
        QuotaPut? sent = null;
        await using var kumod = await StartAsync(body => sent = body);

        var result = await CliRunner.RunAsync(kumod.Url, "quota", "set", "alice", "--vms", "4", "--containers", "8", "--vcpus", "8", "--memory", "8G", "--disk", "100G");
        var project = await CliRunner.RunAsync(kumod.Url, "quota", "set", "--project", "lab1", "--vms", "20");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(0, project.ExitCode);
        Assert.Equal(["PUT /api/v1/quotas/user/alice", "PUT /api/v1/quotas/project/lab1"], kumod.Requests);
        Assert.Equal(new QuotaPut { Vms = 20 }, sent);
        Assert.Equal("quota of project lab1", Lines(project.Out)[0]);
    }

    [Theory]
    [InlineData(new[] { "alice" }, "error: nothing to change: give --vms, --containers, --vcpus, --memory or --disk")]
    [InlineData(new[] { "--vms", "2" }, "error: name the USER, or give --project P")]
    [InlineData(new[] { "alice", "--project", "lab1", "--vms", "2" }, "error: give USER or --project, not both")]
    [InlineData(new[] { "alice", "--memory", "8X" }, "error: --memory: size '8X' has an unknown unit 'X'")]
    [InlineData(new[] { "alice", "--vms", "-1" }, "error: --vms must be 0 or more, not -1")]
    public async Task Set_WithBadArguments_FailsBeforeAnyRequest(string[] args, string error)
    {
        await using var kumod = await StartAsync();

        var result = await CliRunner.RunAsync(kumod.Url, ["quota", "set", .. args]);

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith(error, Assert.Single(result.ErrLines));
        Assert.Empty(kumod.Requests);
    }

    [Fact]
    public async Task QuotaExceeded_OnCreate_ShowsTheQuotaLine()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/instances", () =>
            FakeKumod.Problem(403, ProblemTypes.QuotaExceeded, "Quota exceeded", "user 'alice' quota for vms exceeded: 4 VMs in use of 4",
                errors: new() { ["vms"] = ["4 VMs in use of 4 (user alice)"] })));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web5", "--image", "tiny");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: Quota exceeded", "  vms: 4 VMs in use of 4 (user alice)", "  (see: kumo quota show)"], result.ErrLines);
    }
}
