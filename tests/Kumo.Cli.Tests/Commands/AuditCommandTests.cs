using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Cli.Tests.Commands;

public sealed class AuditCommandTests
{
    private static Task<FakeKumod> VerifyingAsync(AuditVerification answer) =>
        FakeKumod.StartAsync(app => app.MapGet("/api/v1/audit/verify", () => FakeKumod.Ok(answer)));

    [Fact]
    public async Task Verify_WhenIntact_SaysSoAndExits0()
    {
        await using var kumod = await VerifyingAsync(new AuditVerification { Ok = true, Count = 42, CheckpointCount = 41 });

        var result = await CliRunner.RunAsync(kumod.Url, "audit", "verify");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("audit log intact: 42 entries, the signed checkpoint vouches for 41\n", result.Out);
        Assert.Empty(result.Err);
    }

    [Fact]
    public async Task Verify_WhenBroken_NamesTheFirstBrokenEntryAndExits1()
    {
        await using var kumod = await VerifyingAsync(new AuditVerification
        {
            Ok = false,
            Count = 16,
            CheckpointCount = 40,
            BrokenSeq = 17,
            Reason = "hash mismatch: the entry was changed after it was written",
        });

        var result = await CliRunner.RunAsync(kumod.Url, "audit", "verify");

        Assert.Equal(1, result.ExitCode);
        Assert.Empty(result.Out);
        Assert.Equal(["error: audit log broken at entry 17: hash mismatch: the entry was changed after it was written"], result.ErrLines);
    }

    [Fact]
    public async Task Verify_WhenTheCheckpointIsForged_SaysWhyAndExits1()
    {
        await using var kumod = await VerifyingAsync(new AuditVerification
        {
            Ok = false,
            Count = 40,
            Reason = "the checkpoint's signature does not verify: it was forged or altered",
        });

        var result = await CliRunner.RunAsync(kumod.Url, "audit", "verify");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: audit log broken: the checkpoint's signature does not verify: it was forged or altered"], result.ErrLines);
    }

    [Fact]
    public async Task Verify_WhenBrokenWithJsonOutput_PrintsTheResultAndStillExits1()
    {
        await using var kumod = await VerifyingAsync(new AuditVerification { Ok = false, Count = 4, BrokenSeq = 5, Reason = "entry 5 is missing" });

        var result = await CliRunner.RunAsync(kumod.Url, "audit", "verify", "-o", "json");

        Assert.Equal(1, result.ExitCode);
        var printed = System.Text.Json.JsonSerializer.Deserialize<AuditVerification>(result.Out, FakeKumod.Json)!;
        Assert.Equal((false, 5L, "entry 5 is missing"), (printed.Ok, printed.BrokenSeq!.Value, printed.Reason));
        Assert.Equal(["error: audit log broken at entry 5: entry 5 is missing"], result.ErrLines);
    }

    [Fact]
    public async Task Verify_WhenKumodIsUnreachable_Exits2()
    {
        var result = await CliRunner.RunAsync(new Uri($"http://127.0.0.1:{FakeKumod.UnusedPort()}"), "audit", "verify");

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: cannot reach kumod", result.Err);
    }

    [Fact]
    public async Task List_SendsTheFiltersAndPrintsOneRowPerEntry()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapGet("/api/v1/audit", () => FakeKumod.Ok(new[]
        {
            Entry(2, "alice", "instance.create", "allowed", 202, "/api/v1/instances"),
            Entry(1, null, "node.list", "denied", 403, "/api/v1/nodes"),
        })));

        var result = await CliRunner.RunAsync(kumod.Url, "audit", "list", "--user", "alice", "--since", "1h", "--limit", "2");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(["GET /api/v1/audit?user=alice&since=1h&limit=2"], kumod.Requests);
        var lines = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()).ToList();
        Assert.Equal(3, lines.Count);
        Assert.StartsWith("SEQ", lines[0]);
        Assert.Matches(@"^2\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+alice\s+10\.0\.0\.5\s+instance\.create\s+allowed 202\s+/api/v1/instances$", lines[1]);
        Assert.Matches(@"^1\s+.*\(anonymous\)\s+10\.0\.0\.5\s+node\.list\s+denied 403\s+/api/v1/nodes$", lines[2]);
    }

    [Theory]
    [InlineData("--since", "yesterday", "error: --since: 'yesterday' is neither an RFC 3339 time (2026-11-24T12:00:00Z) nor a duration (30m, 1h, 2d)")]
    [InlineData("--limit", "0", "error: --limit must be at least 1, not 0")]
    public async Task List_WithBadFilter_FailsWithoutAskingKumod(string option, string value, string error)
    {
        await using var kumod = await FakeKumod.StartAsync(_ => { });

        var result = await CliRunner.RunAsync(kumod.Url, "audit", "list", option, value);

        Assert.Equal(1, result.ExitCode);
        Assert.Equal([error], result.ErrLines);
        Assert.Empty(kumod.Requests);
    }

    [Fact]
    public async Task Export_WritesTheJsonLinesToAPrivateFileAndCountsThem()
    {
        const string Lines = "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}\n";
        await using var kumod = await FakeKumod.StartAsync(app =>
            app.MapGet("/api/v1/audit/export", () => Results.Text(Lines, "application/x-ndjson")));
        using var dir = new TempDir();
        var file = dir.File("audit.jsonl");

        var result = await CliRunner.RunAsync(kumod.Url, "audit", "export", file);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal($"3 audit entries written to {file}\n", result.Out);
        Assert.Equal(Lines, await File.ReadAllTextAsync(file));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        Assert.Equal(["audit.jsonl"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    private static AuditEntry Entry(long seq, string? user, string action, string outcome, int status, string target) => new()
    {
        Seq = seq,
        Time = DateTimeOffset.UtcNow,
        UserName = user,
        Source = "10.0.0.5",
        Method = "GET",
        Action = action,
        Target = target,
        Outcome = outcome,
        Status = status,
        RequestId = "r" + seq,
        PrevHash = new string('0', 64),
        Hash = new string('1', 64),
    };
}
