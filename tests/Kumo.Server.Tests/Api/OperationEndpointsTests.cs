using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Instances;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Api;

public sealed class OperationEndpointsTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    private TestServer _server = null!;
    private string _nodeId = "";

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        _nodeId = await _server.AddNodeAsync("node-a");
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Events_ForFinishedOperation_SendsOneEventAndCloses()
    {
        var op = await CreateAsync("web");
        await ReportAsync("web", InstanceStates.Running, "booted");

        using var cts = new CancellationTokenSource(Deadline);
        using var response = await _server.Client.GetAsync($"/api/v1/operations/{op.Id}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        var body = await response.Content.ReadAsStringAsync(cts.Token);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = Parse(body);
        var e = Assert.Single(events);
        Assert.Equal((op.Id, OperationStatuses.Succeeded, "booted"), (e.OperationId, e.Status, e.Message));
    }

    [Fact]
    public async Task Events_ForRunningOperation_StreamsTheChangeThenCloses()
    {
        var op = await CreateAsync("web");
        using var cts = new CancellationTokenSource(Deadline);
        using var response = await _server.Client.GetAsync($"/api/v1/operations/{op.Id}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var first = await ReadEventAsync(reader, cts.Token);
        Assert.Equal(OperationStatuses.Running, first.Status);

        await ReportAsync("web", InstanceStates.Running, "booted");

        var second = await ReadEventAsync(reader, cts.Token);
        Assert.Equal((OperationStatuses.Succeeded, "booted"), (second.Status, second.Message));
        Assert.Equal("\n", await reader.ReadToEndAsync(cts.Token)); // the blank line ending the event, then the stream closes
    }

    [Fact]
    public async Task Events_ForUnknownOperation_Returns404Problem()
    {
        await (await _server.Client.GetAsync("/api/v1/operations/nope/events")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);
    }

    [Fact]
    public async Task Get_Operation_ReturnsItsCurrentStatus()
    {
        var op = await CreateAsync("web");
        await ReportAsync("web", InstanceStates.Running, "booted");

        var current = await _server.Client.GetFromJsonAsync<Operation>($"/api/v1/operations/{op.Id}", Problems.Json);

        Assert.Equal(OperationStatuses.Succeeded, current!.Status);
    }

    private async Task<Operation> CreateAsync(string name)
    {
        var response = await _server.CreateAsync(new InstancesPost { Name = name });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
    }

    /// <summary>Applies a status report as the node's agent would send it.</summary>
    private async Task ReportAsync(string name, string state, string message)
    {
        var instances = _server.App.Services.GetRequiredService<InstanceService>();
        var id = (await instances.GetAsync("admin", name, CancellationToken.None)).Id;
        await _server.Database.WriteAsync(ctx => instances.ApplyStatus(ctx, _nodeId, id, state, message, generation: 1, gone: false), CancellationToken.None);
    }

    private static List<OperationEvent> Parse(string body) =>
        body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(block => Assert.Single(block.Split('\n'), l => l.StartsWith("data: ", StringComparison.Ordinal)))
            .Select(line => JsonSerializer.Deserialize<OperationEvent>(line["data: ".Length..], Problems.Json)!)
            .ToList();

    private static async Task<OperationEvent> ReadEventAsync(StreamReader reader, CancellationToken ct)
    {
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
                return JsonSerializer.Deserialize<OperationEvent>(line["data: ".Length..], Problems.Json)!;
        }
        throw new EndOfStreamException("the event stream closed before the next event");
    }
}
