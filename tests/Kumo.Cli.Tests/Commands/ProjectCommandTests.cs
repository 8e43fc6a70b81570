using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using static Kumo.Cli.Tests.Commands.IdentityFakes;

namespace Kumo.Cli.Tests.Commands;

public sealed class ProjectCommandTests
{
    private static Task<FakeKumod> StartAsync() => FakeKumod.StartAsync(app =>
    {
        app.MapGet("/api/v1/projects", () => FakeKumod.Ok(new[]
        {
            new Project { Name = "alice", PersonalOf = "alice", Members = ["alice"] },
            new Project { Name = "lab1", Members = ["admin", "alice"] },
        }));
        app.MapGet("/api/v1/instances", () => FakeKumod.Ok(new[] { FakeKumod.Instance("web") }));
    });

    [Fact]
    public async Task Use_StoresTheProject_AndLaterCommandsActInIt()
    {
        using var dir = new TempDir();
        await using var kumod = await StartAsync();
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "token=kumo_t");

        var use = await CliRunner.RunAsync(["project", "use", "lab1"], configPath: config);
        var list = await CliRunner.RunAsync(["vm", "list"], configPath: config);

        Assert.Equal(0, use.ExitCode);
        Assert.Equal($"now acting in project lab1 (saved in {config})\n", use.Out);
        Assert.Contains("project=lab1", await File.ReadAllLinesAsync(config));
        Assert.Equal(0, list.ExitCode);
        Assert.Equal("GET /api/v1/instances?project=lab1&type=vm", kumod.Requests[^1]);
        Assert.Equal("project: lab1", list.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1]);
    }

    [Fact]
    public async Task Use_WithAProjectYouAreNotIn_IsRefused_AndNothingIsStored()
    {
        using var dir = new TempDir();
        await using var kumod = await StartAsync();
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "project=lab1");

        var result = await CliRunner.RunAsync(["project", "use", "lab9"], configPath: config);

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: project 'lab9' does not exist or you are not a member (see: kumo project list)"], result.ErrLines);
        Assert.Contains("project=lab1", await File.ReadAllLinesAsync(config));
    }

    [Fact]
    public async Task UseClear_ForgetsTheProject_SoThePersonalOneIsUsedQuietly()
    {
        using var dir = new TempDir();
        await using var kumod = await StartAsync();
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "project=lab1");

        var clear = await CliRunner.RunAsync(["project", "use", "--clear"], configPath: config);
        var list = await CliRunner.RunAsync(["vm", "list"], configPath: config);

        Assert.Equal(0, clear.ExitCode);
        Assert.DoesNotContain("project=", await File.ReadAllTextAsync(config));
        Assert.Equal("GET /api/v1/instances?type=vm", kumod.Requests[^1]);
        Assert.DoesNotContain("project:", list.Out);
    }

    [Theory]
    [InlineData(true, true, true, "flag1")]
    [InlineData(false, true, true, "env1")]
    [InlineData(false, false, true, "file1")]
    [InlineData(false, false, false, null)]
    public async Task Project_PrefersTheFlagThenKumoProjectThenTheConfigFile(bool flag, bool env, bool file, string? expected)
    {
        using var dir = new TempDir();
        await using var kumod = await StartAsync();
        var config = Config(dir, ["url=" + kumod.Url.ToString().TrimEnd('/'), .. file ? new[] { "project=file1" } : []]);
        var variables = env ? new Dictionary<string, string> { ["KUMO_PROJECT"] = "env1" } : null;

        var result = await CliRunner.RunAsync(flag ? ["vm", "list", "--project", "flag1"] : ["vm", "list"], variables, config);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(expected is null ? "GET /api/v1/instances?type=vm" : $"GET /api/v1/instances?project={expected}&type=vm", Assert.Single(kumod.Requests));
    }

    [Fact]
    public async Task Project_WithAnInvalidName_FailsBeforeAnyRequest()
    {
        await using var kumod = await StartAsync();

        var result = await CliRunner.RunAsync(kumod.Url, "--project", "Lab_1", "vm", "list");

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("error: project 'Lab_1'", Assert.Single(result.ErrLines));
        Assert.Empty(kumod.Requests);
    }

    [Fact]
    public async Task AddMember_PostsTheUser_AndShowsTheMembers()
    {
        MemberPost? sent = null;
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/projects/{name}/members", (string name, MemberPost body) =>
        {
            sent = body;
            return FakeKumod.Ok(new Project { Name = name, Members = ["admin", "alice"] });
        }));

        var result = await CliRunner.RunAsync(kumod.Url, "project", "add-member", "lab1", "alice");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(new MemberPost { User = "alice" }, sent);
        Assert.Equal("alice added to project lab1 (members: admin, alice)\n", result.Out);
    }
}
