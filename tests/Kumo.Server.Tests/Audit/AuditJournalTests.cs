using System.Buffers;
using Kumo.Server.Audit;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Audit;

/// <summary>What a crash can leave in the audit journal, and what the next start makes of it.</summary>
public sealed class AuditJournalTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string JournalDir => Path.Combine(_dir.Path, "audit-journal");

    [Fact]
    public void Appended_Batches_AreReadBackInOrder_FromTheTableHeadOn()
    {
        var rows = Chain(5);
        using (var journal = new AuditJournal(_dir.Path))
        {
            journal.Restart(0);
            journal.Append(Lines(rows[..2]), 2);
            journal.Append(Lines(rows[2..]), 5);
        }

        var replay = new AuditJournal(_dir.Path).ReadSince(2, rows[1].Hash);

        Assert.Equal([3L, 4, 5], replay.Rows.Select(r => r.Seq));
        Assert.Equal(rows[2..].Select(r => r.Hash), replay.Rows.Select(r => r.Hash));
        Assert.Null(replay.TornTail);
        Assert.Null(replay.Damage);
    }

    [Theory]
    [InlineData("half a line")]
    [InlineData("a line without its newline")]
    [InlineData("zeros after the size grew")]
    public void AnUnfinishedLastWrite_IsDroppedAsATornTail(string how)
    {
        var rows = Chain(3);
        var path = WriteSegment(rows[..2]);
        var last = Lines(rows[2..]);
        using (var f = File.Open(path, FileMode.Append))
        {
            switch (how)
            {
                case "half a line": f.Write(last.AsSpan(0, last.Length / 2)); break;
                case "a line without its newline": f.Write(last.AsSpan(0, last.Length - 1)); break;
                default: f.Write(new byte[4096]); break;
            }
        }

        var replay = new AuditJournal(_dir.Path).ReadSince(0, AuditChain.Genesis);

        Assert.Equal([1L, 2], replay.Rows.Select(r => r.Seq));
        Assert.Null(replay.Damage);
        Assert.Equal(how == "zeros after the size grew", replay.TornTail is null);
    }

    [Fact]
    public void AChangedEntry_StopsTheReplayThere_AndKeepsTheSegmentAsEvidence()
    {
        var rows = Chain(4);
        var path = WriteSegment(rows);
        var text = File.ReadAllText(path).Replace("/api/v1/nodes?n=3", "/api/v1/nodes?n=X", StringComparison.Ordinal);
        File.WriteAllText(path, text);

        var replay = new AuditJournal(_dir.Path).ReadSince(0, AuditChain.Genesis);

        Assert.Equal([1L, 2], replay.Rows.Select(r => r.Seq));
        Assert.Equal(3, replay.Damage!.Value.Seq);
        Assert.Contains("entry 3", replay.Damage.Value.Reason);
        Assert.True(File.Exists(path + ".damaged"));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void GarbageBeforeGoodLines_IsDamage_NotATornTail()
    {
        var rows = Chain(3);
        var path = WriteSegment(rows);
        var bytes = File.ReadAllBytes(path);
        bytes[5] = (byte)'#';
        File.WriteAllBytes(path, bytes);

        var replay = new AuditJournal(_dir.Path).ReadSince(0, AuditChain.Genesis);

        Assert.Empty(replay.Rows);
        Assert.Equal(1, replay.Damage!.Value.Seq);
        Assert.Contains("cannot be read at byte 0", replay.Damage.Value.Reason);
    }

    [Fact]
    public void EntriesAlreadyInTheTable_AreSkipped_AndAJournalThatDoesNotChainOnIsDamage()
    {
        var rows = Chain(3);
        WriteSegment(rows);

        var fromTwo = new AuditJournal(_dir.Path).ReadSince(2, rows[1].Hash);
        var fromAnotherChain = new AuditJournal(_dir.Path).ReadSince(2, new string('f', 64));

        Assert.Equal([3L], fromTwo.Rows.Select(r => r.Seq));
        Assert.Null(fromTwo.Damage);
        Assert.Empty(fromAnotherChain.Rows);
        Assert.Equal(3, fromAnotherChain.Damage!.Value.Seq);
    }

    [Fact]
    public void FullSegments_AreClosed_AndDeletedOnceTheTableHoldsThem()
    {
        var rows = Chain(3);
        using var journal = new AuditJournal(_dir.Path);
        journal.Restart(0);
        var padding = new byte[AuditJournal.SegmentBytes];
        Array.Fill(padding, (byte)' ');
        // One batch past the segment size closes the segment; the next entries go to a new one.
        journal.Append([.. padding, .. Lines(rows[..1])], 1);
        journal.Append(Lines(rows[1..]), 3);
        Assert.Equal(2, Directory.GetFiles(JournalDir).Length);

        journal.DeleteCovered(0);
        Assert.Equal(2, Directory.GetFiles(JournalDir).Length);
        journal.DeleteCovered(1);

        var left = Assert.Single(Directory.GetFiles(JournalDir));
        Assert.EndsWith("00000000000000000002.jsonl", left);
    }

    [Fact]
    public void TextThatIsNotValidUtf16_IsWrittenAndReadBackAsTheTableWouldStoreIt_AndStillChains()
    {
        // A lone surrogate cannot be encoded as UTF-8: the chain's canonical form, SQLite and the journal all turn
        // it into U+FFFD, so the hash taken before it was written still matches what is read back.
        var rows = Chain(1);
        rows[0].Target = "/api/v1/nodes?x=\ud800";
        rows[0].UserName = "a\udc00b";
        rows[0].Hash = AuditChain.Hash(rows[0]);
        WriteSegment(rows);

        var replay = new AuditJournal(_dir.Path).ReadSince(0, AuditChain.Genesis);

        var row = Assert.Single(replay.Rows);
        Assert.Equal("/api/v1/nodes?x=\ufffd", row.Target);
        Assert.Equal("a\ufffdb", row.UserName);
        Assert.Equal(rows[0].Hash, AuditChain.Hash(row));
        Assert.Null(replay.Damage);
    }

    private string WriteSegment(AuditRow[] rows)
    {
        Directory.CreateDirectory(JournalDir);
        var path = Path.Combine(JournalDir, "00000000000000000001.jsonl");
        File.WriteAllBytes(path, Lines(rows));
        return path;
    }

    private static byte[] Lines(AuditRow[] rows)
    {
        var buffer = new ArrayBufferWriter<byte>();
        foreach (var row in rows)
            AuditJournal.Write(buffer, row);
        return buffer.WrittenSpan.ToArray();
    }

    private static AuditRow[] Chain(int count)
    {
        var rows = new AuditRow[count];
        var prev = AuditChain.Genesis;
        for (var i = 0; i < count; i++)
        {
            rows[i] = new AuditRow
            {
                Seq = i + 1,
                Time = "2026-12-06T06:00:00.0000000+00:00",
                UserId = "u1",
                UserName = "admin",
                Source = "127.0.0.1",
                Method = "GET",
                Action = "node.list",
                Target = $"/api/v1/nodes?n={i + 1}",
                Outcome = "allowed",
                Status = 200,
                RequestId = $"req{i + 1}",
                PrevHash = prev,
            };
            rows[i].Hash = AuditChain.Hash(rows[i]);
            prev = rows[i].Hash;
        }
        return rows;
    }
}
