using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;

namespace Kumo.Cli.Tests;

public sealed class ErrorTests
{
    [Fact]
    public async Task Conflict_PrintsOneErrorLineWithTheDetail_AndExits1()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapDelete("/api/v1/instances/{name}", (string name) =>
            FakeKumod.Problem(409, ProblemTypes.InvalidState, "Invalid state", $"instance {name} is running; stop it or use --force")));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "delete", "web");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: instance web is running; stop it or use --force"], result.ErrLines);
        Assert.Equal("", result.Out);
    }

    [Fact]
    public async Task MistypedSubcommand_PrintsOneLineNamingIt_AndExits1()
    {
        var result = await CliRunner.RunAsync(["vm", "craete", "web"]);

        Assert.Equal(1, result.ExitCode);
        var line = Assert.Single(result.ErrLines);
        Assert.StartsWith("error: Unrecognized command or argument 'craete'", line);
        Assert.EndsWith("(see: kumo vm --help)", line);
        Assert.Equal("", result.Out);
    }

    [Fact]
    public async Task MissingArgument_PrintsOneLine_NotTheWholeHelp()
    {
        var result = await CliRunner.RunAsync(["vm", "show"]);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("(see: kumo vm show --help)", Assert.Single(result.ErrLines));
        Assert.DoesNotContain("Usage:", result.Out + result.Err);
    }

    [Fact]
    public async Task NoCapacity_ListsEachNodesRejectionReason()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/instances", () =>
            FakeKumod.Problem(409, ProblemTypes.NoCapacity, "No capacity", "no node can host 1 cpu and 64G",
                rejections: new() { ["node-2"] = "draining", ["node-1"] = "needs 64G memory, 15G free" })));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "big", "--image", "tiny", "--memory", "64G");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(
            ["error: No capacity", "  node node-1: needs 64G memory, 15G free", "  node node-2: draining"],
            result.ErrLines);
    }

    [Fact]
    public async Task Validation_PrintsTheTitleThenEachFieldMessage_AndExits1()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/instances", () =>
            FakeKumod.Problem(400, ProblemTypes.Validation, "The request is invalid",
                errors: new() { ["memory"] = ["memory must be at least 64M"], ["image"] = ["image 'nope' does not exist"] })));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", "web", "--image", "nope", "--memory", "1M");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal("error: The request is invalid", result.ErrLines[0]);
        Assert.Contains("  memory: memory must be at least 64M", result.ErrLines);
        Assert.Contains("  image: image 'nope' does not exist", result.ErrLines);
    }

    [Fact]
    public async Task NothingListening_Exits2WithHowToStartKumod()
    {
        var url = $"http://127.0.0.1:{FakeKumod.UnusedPort()}";

        var result = await CliRunner.RunAsync(["--url", url, "node", "list"]);

        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.ErrLines);
        Assert.StartsWith($"error: cannot reach kumod at {url}/", line);
        Assert.EndsWith("(is it running? try ./kumo up)", line);
    }

    [Theory]
    [InlineData("Web", "vm name 'Web' is not a valid RFC 1123 label")]
    [InlineData("web", "--memory: size '12X' has an unknown unit 'X'")]
    public async Task InvalidInput_FailsBeforeAnyRequest(string name, string expected)
    {
        await using var kumod = await FakeKumod.StartAsync(_ => { });

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "create", name, "--image", "tiny", "--memory", name == "web" ? "12X" : "256M");

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith($"error: {expected}", Assert.Single(result.ErrLines));
        Assert.Empty(kumod.Requests);
    }
}
