using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Tests.Api;

public sealed class AdminEndpointsTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        await _server.AddNodeAsync("node-a");
        Assert.Equal(HttpStatusCode.Accepted, (await _server.CreateAsync(new InstancesPost { Name = "kept" })).StatusCode);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task Backup_ReturnsASqliteFileHoldingTheState()
    {
        var response = await _server.Client.GetAsync("/api/v1/admin/backup");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/octet-stream", response.Content.Headers.ContentType?.MediaType);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("SQLite format 3\0"u8.ToArray(), bytes[..16]);
        var path = _dir.File("backup.db");
        await File.WriteAllBytesAsync(path, bytes);
        using var c = new SqliteConnection($"Data Source={path};Pooling=False");
        c.Open();
        Assert.Equal(["kept"], c.Query<string>("SELECT name FROM instances"));
        Assert.Equal(["node-a"], c.Query<string>("SELECT name FROM nodes"));
    }

    [Fact]
    public async Task Restore_WithBackup_Returns204AndReplacesTheState()
    {
        var backup = await _server.Client.GetByteArrayAsync("/api/v1/admin/backup");
        Assert.Equal(HttpStatusCode.Accepted, (await _server.CreateAsync(new InstancesPost { Name = "after-backup", Memory = "1G" })).StatusCode);

        var response = await PostRestoreAsync(backup);

        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        var names = (await _server.Client.GetFromJsonAsync<List<Instance>>("/api/v1/instances", Problems.Json))!.Select(i => i.Name);
        Assert.Equal(["kept"], names);
        var node = (await _server.Client.GetFromJsonAsync<Node>("/api/v1/nodes/node-a", Problems.Json))!;
        Assert.Equal((1, 256 * ByteSize.MiB), (node.Instances, node.UsedMemoryBytes));
    }

    [Fact]
    public async Task Restore_WithGarbage_Returns400AndKeepsTheState()
    {
        var garbage = System.Text.Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("not a database ", 1000)));

        await (await PostRestoreAsync(garbage)).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal(1, await _server.CountInstancesAsync());
        Assert.Equal(HttpStatusCode.OK, (await _server.Client.GetAsync("/api/v1/instances/kept")).StatusCode);
    }

    [Fact]
    public async Task Restore_WithSqliteFileThatIsNotAKumoBackup_Returns400()
    {
        var path = _dir.File("other.db");
        using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            c.Open();
            c.Execute("CREATE TABLE recipes (id TEXT)");
        }

        var problem = await (await PostRestoreAsync(await File.ReadAllBytesAsync(path))).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Contains("not a Kumo backup", problem.Detail);
        Assert.Equal(1, await _server.CountInstancesAsync());
    }

    private Task<HttpResponseMessage> PostRestoreAsync(byte[] bytes)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return _server.Client.PostAsync("/api/v1/admin/restore", content);
    }
}
