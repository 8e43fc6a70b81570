using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Audit;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Audit;

/// <summary>Changes made to the audit log behind kumod's back, and whether verify names where.</summary>
public sealed class AuditTamperTests : IAsyncLifetime
{
    private const int Calls = 12;
    private TestServer _server = null!;

    /// <summary>How many entries the log holds after setup: the test server's login, then <see cref="Calls"/> calls.</summary>
    private int Entries { get; set; }

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        var baseline = (await _server.RowsAsync()).Count;
        for (var i = 1; i <= Calls; i++)
            await _server.Client.GetStringAsync($"/api/v1/nodes?call={i}");
        await FlushAsync();
        Entries = baseline + Calls;
        Assert.Equal(Entries, (await _server.RowsAsync()).Count);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Verify_OnUntouchedLog_IsOkWithTheCount()
    {
        var v = await VerifyAsync();

        Assert.True(v.Ok, v.Reason);
        Assert.Equal(Entries, v.Count);
        Assert.Equal(Entries, v.CheckpointCount);
        Assert.Null(v.BrokenSeq);
    }

    [Theory]
    [InlineData("time")]
    [InlineData("user_id")]
    [InlineData("user_name")]
    [InlineData("source")]
    [InlineData("method")]
    [InlineData("action")]
    [InlineData("target")]
    [InlineData("outcome")]
    [InlineData("status")]
    [InlineData("request_id")]
    [InlineData("prev_hash")]
    [InlineData("hash")]
    [InlineData("seq")]
    public async Task FlippingOneByteOfAnEntry_FailsVerifyAtThatEntry(string column)
    {
        // The newest first, while it still is the newest; each change is undone before the next.
        foreach (var seq in new long[] { Entries, 6, 1 })
        {
            var original = (await _server.RowsAsync()).Single(r => r.Seq == seq);
            await SetAsync(column, original.Id, Flipped(original, column));

            var v = await VerifyAsync();

            Assert.False(v.Ok, $"{column} of entry {seq} changed, verify says ok");
            Assert.True(seq == v.BrokenSeq, $"{column} of entry {seq} changed, verify blames {v.BrokenSeq}: {v.Reason}");
            await SetAsync(column, original.Id, Value(original, column));
            Assert.True((await VerifyAsync()).Ok);
        }
    }

    [Fact]
    public async Task DeletingAMiddleEntry_IsNamed()
    {
        await _server.TamperAsync("DELETE FROM audit WHERE seq = 5");

        var v = await VerifyAsync();

        Assert.False(v.Ok);
        Assert.Equal(5, v.BrokenSeq);
        Assert.Equal("entry 5 is missing", v.Reason);
    }

    [Fact]
    public async Task DeletingTheNewestEntries_IsCaughtByTheCheckpoint()
    {
        await _server.TamperAsync($"DELETE FROM audit WHERE seq > {Entries - 3}");

        var v = await VerifyAsync();

        Assert.False(v.Ok);
        Assert.Equal(Entries - 2, v.BrokenSeq);
        Assert.Equal($"entries {Entries - 2} to {Entries} are missing: the signed checkpoint vouches for {Entries} entries, the log ends at {Entries - 3}", v.Reason);
    }

    [Fact]
    public async Task RewritingTheNewestEntriesWithAValidChain_IsCaughtByTheCheckpoint()
    {
        // Someone who knows the hash rule can rebuild a consistent chain; they cannot sign a matching checkpoint.
        await _server.TamperAsync($"DELETE FROM audit WHERE seq >= {Entries - 1}");
        var kept = (await _server.RowsAsync())[^1];
        var forged = new AuditRow
        {
            Seq = Entries - 1,
            Time = kept.Time,
            Source = kept.Source,
            Method = "GET",
            Action = "node.list",
            Target = "/innocent",
            Outcome = "allowed",
            Status = 200,
            RequestId = "x",
            PrevHash = kept.Hash,
        };
        forged.Hash = AuditChain.Hash(forged);
        var second = new AuditRow
        {
            Seq = Entries,
            Time = kept.Time,
            Source = kept.Source,
            Method = "GET",
            Action = "node.list",
            Target = "/innocent",
            Outcome = "allowed",
            Status = 200,
            RequestId = "y",
            PrevHash = forged.Hash,
        };
        second.Hash = AuditChain.Hash(second);
        foreach (var row in new[] { forged, second })
        {
            await _server.TamperAsync("""
                INSERT INTO audit (seq, time, source, method, action, target, outcome, status, request_id, prev_hash, hash)
                VALUES (@Seq, @Time, @Source, @Method, @Action, @Target, @Outcome, @Status, @RequestId, @PrevHash, @Hash)
                """, row);
        }

        var v = await VerifyAsync();

        Assert.False(v.Ok);
        Assert.Equal(Entries, v.BrokenSeq);
        Assert.Equal("the entry differs from the one the signed checkpoint vouches for", v.Reason);
    }

    [Fact]
    public async Task CheckpointForgedWithoutTheKey_IsDetected()
    {
        await _server.TamperAsync($"DELETE FROM audit WHERE seq > {Entries - 3}");
        var head = (await _server.RowsAsync())[^1];
        // A checkpoint that matches the truncated log, signed with a key of the forger's own.
        using var elsewhere = new TempDirectory();
        var forger = new AuditCheckpointFile(elsewhere.Path);
        forger.LoadOrCreateKey();
        forger.Write(new AuditCheckpoint(head.Seq, head.Hash));
        File.Copy(forger.Path, Path.Combine(_server.StateDir, "audit.checkpoint"), overwrite: true);

        var v = await VerifyAsync();

        Assert.False(v.Ok);
        Assert.Null(v.BrokenSeq);
        Assert.Equal("the checkpoint's signature does not verify: it was forged or altered", v.Reason);
    }

    [Fact]
    public async Task CheckpointWithItsCountEdited_IsDetected()
    {
        var path = Path.Combine(_server.StateDir, "audit.checkpoint");
        var json = JsonNode.Parse(await File.ReadAllTextAsync(path))!;
        json["count"] = Entries - 3;
        await File.WriteAllTextAsync(path, json.ToJsonString());

        var v = await VerifyAsync();

        Assert.False(v.Ok);
        Assert.Contains("signature", v.Reason);
    }

    [Fact]
    public async Task Restart_ContinuesTheChain()
    {
        var before = (await _server.RowsAsync())[^1];

        _server = await _server.RestartAsync();
        await _server.Client.GetStringAsync("/api/v1/nodes?after=restart");

        // The restarted server logs in again: that entry links to the last one before the restart, the call to it.
        var rows = await _server.RowsAsync();
        Assert.Equal(Entries + 2, rows.Count);
        var login = rows[^2];
        Assert.Equal(("auth.login", Entries + 1L, before.Hash), (login.Action, login.Seq, login.PrevHash));
        Assert.Equal(("/api/v1/nodes?after=restart", Entries + 2L, login.Hash), (rows[^1].Target, rows[^1].Seq, rows[^1].PrevHash));
        var v = await VerifyAsync();
        Assert.True(v.Ok, v.Reason);
        Assert.Equal(Entries + 2, v.Count);
    }

    [Fact]
    public async Task TruncationWhileKumodIsDown_IsReportedAfterRestartsForGood()
    {
        _server = await _server.RestartAsync(dir => AuditTable.TamperAsync(dir, $"DELETE FROM audit WHERE seq > {Entries - 3}"));
        await _server.Client.GetStringAsync("/api/v1/nodes?after=restart");
        _server = await _server.RestartAsync();

        var v = await VerifyAsync();

        Assert.False(v.Ok);
        Assert.Equal(Entries - 2, v.BrokenSeq);
        Assert.StartsWith($"entries {Entries - 2} to {Entries} are missing", v.Reason);
        Assert.Contains("found when kumod started", v.Reason);
    }

    [Fact]
    public async Task CheckpointDeletedWhileKumodIsDown_IsReportedAfterTheRestart()
    {
        _server = await _server.RestartAsync(dir =>
        {
            File.Delete(Path.Combine(dir, "audit.checkpoint"));
            return Task.CompletedTask;
        });

        var v = await VerifyAsync();

        Assert.False(v.Ok);
        Assert.Null(v.BrokenSeq);
        Assert.Contains("is missing but the log holds", v.Reason);
    }

    [Fact]
    public async Task Restore_KeepsTheAuditLogAndItsChain()
    {
        var backup = await _server.Client.GetByteArrayAsync("/api/v1/admin/backup");
        await _server.Client.GetStringAsync("/api/v1/nodes?after=backup");
        using var content = new ByteArrayContent(backup);
        content.Headers.ContentType = new("application/octet-stream");

        Assert.Equal(HttpStatusCode.NoContent, (await _server.Client.PostAsync("/api/v1/admin/restore", content)).StatusCode);

        var rows = await _server.RowsAsync();
        Assert.Equal(["admin.backup", "node.list", "admin.restore"], rows.Skip(Entries).Select(r => r.Action));
        var v = await VerifyAsync();
        Assert.True(v.Ok, v.Reason);
    }

    [Fact]
    public async Task TheTable_RefusesUpdatesAndDeletes()
    {
        await using var c = new SqliteConnection($"Data Source={Path.Combine(_server.StateDir, "kumo.db")};Pooling=false");
        c.Open();

        var update = Assert.Throws<SqliteException>(() => c.Execute("UPDATE audit SET outcome = 'allowed' WHERE seq = 1"));
        var delete = Assert.Throws<SqliteException>(() => c.Execute("DELETE FROM audit WHERE seq = 1"));

        Assert.Contains("append-only", update.Message);
        Assert.Contains("append-only", delete.Message);
    }

    private Task SetAsync(string column, long id, object? value) =>
        _server.TamperAsync($"UPDATE audit SET {column} = @value WHERE id = @id", new { value, id });

    private static object? Value(AuditRow row, string column) => typeof(AuditRow).GetProperty(Pascal(column))!.GetValue(row);

    /// <summary>The value with one byte flipped (a name for the anonymous caller's null user).</summary>
    private static object Flipped(AuditRow row, string column) => Value(row, column) switch
    {
        null => "x",
        long n when column == "seq" => n ^ 0x40,
        long n => n ^ 0x01,
        string text => FlipText(text),
        var other => throw new InvalidOperationException($"cannot flip {other}"),
    };

    private static string FlipText(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        bytes[bytes.Length / 2] ^= 0x01;
        return Encoding.UTF8.GetString(bytes);
    }

    private static string Pascal(string column) =>
        string.Concat(column.Split('_').Select(p => char.ToUpperInvariant(p[0]) + p[1..]));

    private Task FlushAsync() => _server.App.Services.GetRequiredService<AuditLog>().FlushAsync(CancellationToken.None);

    private Task<AuditVerification> VerifyAsync() => VerifyAsync(_server);

    private static async Task<AuditVerification> VerifyAsync(TestServer server) =>
        (await server.Client.GetFromJsonAsync<AuditVerification>("/api/v1/audit/verify", Problems.Json))!;
}
