using Kumo.Core;
using Kumo.Server.Audit;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Audit;

/// <summary>
/// Group commit without a journal thread: the caller that finds nobody writing writes the batch, later arrivals share
/// the next one, and a shutdown in the middle neither loses an acknowledged entry nor leaves a caller waiting.
/// </summary>
public sealed class AuditGroupCommitTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private AuditLog Log => _server.App.Services.GetRequiredService<AuditLog>();

    private static AuditRow Entry(string target) => new()
    {
        Time = AuditChain.FormatTime(DateTimeOffset.UtcNow),
        Source = "127.0.0.1",
        Method = "GET",
        Action = "test.append",
        Target = target,
        Outcome = AuditOutcomes.Allowed,
        Status = 200,
        RequestId = target,
    };

    [Fact]
    public async Task EveryField_ReachesTheTableAsAppended_WhateverItsText_AndTheChainVerifies()
    {
        // Escapes, non-BMP characters, control characters, nulls and large numbers go through the journal line and
        // the table copy and must come out as the values that were hashed.
        var texts = new[]
        {
            "plain", "quote \" backslash \\ slash /", "tab\tnewline\ncr\r", "\u0001\u001f control", "é ü ß 中文",
            "emoji 😀 and 𝄞", "<script>&amp;'", "/api/v1/instances?name=a%20b&token=[redacted]", new string('x', 2000), "",
        };
        var appended = new List<AuditRow>();
        for (var i = 0; i < texts.Length; i++)
        {
            var entry = Entry(texts[i]);
            entry.UserName = i % 2 == 0 ? texts[i] : null;
            entry.UserId = i % 3 == 0 ? null : $"u-{texts[i]}";
            entry.Status = i == 0 ? long.MaxValue : 200 + i;
            entry.Action = "test.text";
            await Log.AppendAsync(entry, CancellationToken.None);
            appended.Add(entry);
        }

        var rows = (await _server.RowsAsync()).Where(r => r.Action == "test.text").OrderBy(r => r.Seq).ToList();
        Assert.Equal(appended.Count, rows.Count);
        for (var i = 0; i < rows.Count; i++)
        {
            var (want, got) = (appended[i], rows[i]);
            Assert.Equal((want.Seq, want.Time, want.UserId, want.UserName, want.Source, want.Method, want.Action),
                (got.Seq, got.Time, got.UserId, got.UserName, got.Source, got.Method, got.Action));
            Assert.Equal((want.Target, want.Outcome, want.Status, want.RequestId, want.PrevHash, want.Hash),
                (got.Target, got.Outcome, got.Status, got.RequestId, got.PrevHash, got.Hash));
            Assert.Equal(got.Hash, AuditChain.Hash(got));
        }
        var verification = await Log.VerifyAsync(CancellationToken.None);
        Assert.True(verification.Ok, verification.Reason);
    }

    [Fact]
    public async Task CallersAppendingAtOnce_ShareFdatasyncs_AndEveryEntryLandsOnceInOrderOfItsSeq()
    {
        var (seq0, batches0) = (Log.JournalSeq, Log.JournalBatches);

        // 16 callers, each appending its next entry once the previous one is durable, as requests do; a barrier lines
        // them up before each round, so they arrive together however the machine schedules them.
        var log = Log;
        using var barrier = new Barrier(16);
        var callers = Enumerable.Range(0, 16).Select(c => new Thread(() =>
        {
            for (var i = 0; i < 40; i++)
            {
                barrier.SignalAndWait();
                log.AppendAsync(Entry($"/test/{c}/{i}"), CancellationToken.None).GetAwaiter().GetResult();
            }
        })).ToList();
        callers.ForEach(t => t.Start());
        await Task.Run(() => callers.ForEach(t => t.Join()));

        Assert.Equal(seq0 + 640, Log.JournalSeq);
        Assert.True(Log.JournalBatches - batches0 < 640, $"{Log.JournalBatches - batches0} batches for 640 entries: none was shared");
        var rows = (await _server.RowsAsync()).Where(r => r.Action == "test.append").ToList();
        Assert.Equal(640, rows.Count);
        Assert.Equal(640, rows.Select(r => r.Target).Distinct().Count());
        var verification = await Log.VerifyAsync(CancellationToken.None);
        Assert.True(verification.Ok, verification.Reason);
    }

    [Fact]
    public async Task AppendsRacingShutdown_EachLandsOrIsRefused_AndNoneIsLeftWaiting()
    {
        var log = Log;
        using var go = new ManualResetEventSlim();
        var appends = Enumerable.Range(0, 8).Select(c => Task.Run(async () =>
        {
            go.Wait();
            var landed = new List<string>();
            for (var i = 0; i < 200; i++)
            {
                var target = $"/race/{c}/{i}";
                try
                {
                    await log.AppendAsync(Entry(target), CancellationToken.None);
                    landed.Add(target);
                }
                catch (ObjectDisposedException)
                {
                    return landed;
                }
            }
            return landed;
        })).ToList();
        go.Set();
        await Task.Delay(20);
        await log.DisposeAsync();

        // Every caller finished: either its entry was acknowledged or it was refused, never left hanging.
        var results = await Task.WhenAll(appends).WaitAsync(TimeSpan.FromSeconds(60));
        var acknowledged = results.SelectMany(r => r).ToHashSet();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => log.AppendAsync(Entry("/race/after"), CancellationToken.None));

        // Everything acknowledged is in the table after the stop, nothing else from the race, each once.
        var table = (await AuditTable.RowsAsync(_server.StateDir)).Where(r => r.Target.StartsWith("/race/", StringComparison.Ordinal)).ToList();
        Assert.Equal(acknowledged.Order(), table.Select(r => r.Target).Order());
        await log.DisposeAsync(); // a second stop (the server's own) is harmless
    }
}
