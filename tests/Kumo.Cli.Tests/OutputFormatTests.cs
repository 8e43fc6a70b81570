using System.Text.Json;
using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;

namespace Kumo.Cli.Tests;

public sealed class OutputFormatTests
{
    private static Task<FakeKumod> StartWithTwoVmsAsync() => FakeKumod.StartAsync(app =>
        app.MapGet("/api/v1/instances", () => FakeKumod.Ok(new[]
        {
            FakeKumod.Instance("web"),
            FakeKumod.Instance("db", InstanceStates.Stopped, memory: 2 * ByteSize.GiB),
        })));

    [Fact]
    public async Task VmList_AsTable_ShowsHeadersOneRowPerVmAndHumanSizes()
    {
        await using var kumod = await StartWithTwoVmsAsync();

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "list");

        Assert.Equal(0, result.ExitCode);
        var lines = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("NAME", lines[0]);
        Assert.Contains("MEMORY", lines[0]);
        Assert.Matches(@"web\s+running\s+node-1\s+tiny\s+1\s+256M\s+1G", lines[1]);
        Assert.Matches(@"db\s+stopped\s+node-1\s+tiny\s+1\s+2G\s+1G", lines[2]);
        Assert.Contains("GET /api/v1/instances?type=vm", kumod.Requests);
    }

    [Fact]
    public async Task VmList_AsJson_PrintsTheWireRecordsInCamelCase()
    {
        await using var kumod = await StartWithTwoVmsAsync();

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "list", "-o", "json");

        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.Out);
        var first = json.RootElement[0];
        Assert.Equal("web", first.GetProperty("name").GetString());
        Assert.Equal(256 * ByteSize.MiB, first.GetProperty("memoryBytes").GetInt64());
        Assert.Equal("web", first.GetProperty("labels").GetProperty("tier").GetString());
        Assert.Equal(2, json.RootElement.GetArrayLength());
    }

    [Fact]
    public async Task VmList_AsYaml_UsesTheJsonKeys()
    {
        await using var kumod = await StartWithTwoVmsAsync();

        var result = await CliRunner.RunAsync(["-o", "yaml", "--url", kumod.Url.ToString(), "vm", "list"]);

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("- id: 01JBWEB", result.Out);
        Assert.Contains("  name: web", result.Out);
        Assert.Contains("  memoryBytes: 268435456", result.Out);
        Assert.Contains("  state: stopped", result.Out);
        Assert.Contains("    tier: web", result.Out);
    }

    [Fact]
    public async Task NodeShow_AsTable_PrintsKeyValueLinesWithHumanSizes()
    {
        await using var kumod = await FakeKumod.StartAsync(app =>
            app.MapGet("/api/v1/nodes/{name}", (string name) => FakeKumod.Ok(FakeKumod.Node(name))));

        var result = await CliRunner.RunAsync(kumod.Url, "node", "show", "node-1");

        Assert.Equal(0, result.ExitCode);
        Assert.Matches(@"Name:\s+node-1", result.Out);
        Assert.Matches(@"Memory:\s+16G \(512M used, 15872M free\)", result.Out);
        Assert.Matches(@"CPUs:\s+8 \(2 used, 6 free\)", result.Out);
    }

    [Fact]
    public async Task UnknownOutputFormat_IsAUsageError()
    {
        var result = await CliRunner.RunAsync(["vm", "list", "-o", "xml"]);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("xml", result.Err);
    }

    [Fact]
    public async Task Help_ShowsExamples()
    {
        var result = await CliRunner.RunAsync(["vm", "create", "--help"]);

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Examples:", result.Out);
        Assert.Contains("kumo vm create web --image tiny --cpus 1 --memory 256M", result.Out);
    }
}
