using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Kumo.Core.Files;

namespace Kumo.Server.Audit;

/// <summary>
/// Where an audit entry becomes durable before its request is answered: append-only segment files of JSON lines,
/// one durable write per batch (<see cref="DurableAppendFile"/>). The table in kumo.db is filled from here in large,
/// lazy batches, so a request pays for one system call shared with its neighbours instead of a SQLite transaction. A
/// segment is deleted once every entry in it is in the table; whatever a crash left behind is replayed into the table
/// at the next start.
/// </summary>
internal sealed class AuditJournal : IDisposable
{
    /// <summary>A segment is closed and a new one begun past this size (about 3,500 entries), so covered ones can be deleted.</summary>
    internal const int SegmentBytes = 1 << 20;

    private const string Extension = ".jsonl";
    private const string DamagedSuffix = ".damaged";

    private readonly string _directory;
    private readonly Lock _closedLock = new();
    private readonly List<(string Path, long LastSeq)> _closed = [];
    private DurableAppendFile? _file;
    private long _lastSeq;

    private readonly bool _sync;

    /// <param name="sync">False: batches are NOT made durable (benchmarks only, see <see cref="KumoServerOptions.BenchAuditJournalWithoutSync"/>).</param>
    public AuditJournal(string stateDir, bool sync = true)
    {
        _directory = Path.Combine(stateDir, "audit-journal");
        _sync = sync;
    }

    public string Directory => _directory;

    // ---- replay at start

    /// <summary>What the segments on disk hold past the table's head, checked against the chain.</summary>
    internal sealed record Replay(List<AuditRow> Rows, string? TornTail, (long Seq, string Reason)? Damage);

    /// <summary>
    /// Reads every segment in order and returns the entries after <paramref name="headSeq"/> that continue the chain
    /// from <paramref name="headHash"/>. An unfinished last line (a batch whose fdatasync never returned, so nobody was
    /// answered) is a torn tail and dropped; anything else that does not parse or chain is damage: replay stops there
    /// and the segments from that one on are kept, renamed *.damaged, as evidence.
    /// </summary>
    public Replay ReadSince(long headSeq, string headHash)
    {
        var rows = new List<AuditRow>();
        if (!System.IO.Directory.Exists(_directory))
            return new Replay(rows, null, null);
        var segments = Segments();
        var seq = headSeq;
        var hash = headHash;
        string? torn = null;
        for (var i = 0; i < segments.Count; i++)
        {
            var bytes = File.ReadAllBytes(segments[i]);
            var position = 0;
            while (position < bytes.Length)
            {
                var end = Array.IndexOf(bytes, (byte)'\n', position);
                var lineEnd = end < 0 ? bytes.Length : end;
                var line = bytes.AsSpan(position, lineEnd - position);
                if (IsAllZero(bytes.AsSpan(position)))
                    break; // space a crash left between the new size and data that never reached the disk
                var row = Parse(line);
                var chained = row is not null && (row.Seq <= seq || (row.Seq == seq + 1 && row.PrevHash == hash && AuditChain.Hash(row) == row.Hash));
                if (row is null || !chained || end < 0)
                {
                    var last = i == segments.Count - 1 && (end < 0 || IsAllZero(bytes.AsSpan(end + 1)));
                    if (last && (row is null || end < 0))
                    {
                        torn = $"{bytes.Length - position} bytes at the end of {segments[i]} (an unfinished write)";
                        break;
                    }
                    var reason = row is null
                        ? $"the audit journal {segments[i]} cannot be read at byte {position}; entries from {seq + 1} on were not recovered"
                        : $"the audit journal {segments[i]} holds entry {row.Seq} where entry {seq + 1} chaining from the table should be";
                    for (var j = i; j < segments.Count; j++)
                        File.Move(segments[j], segments[j] + DamagedSuffix, overwrite: true);
                    return new Replay(rows, torn, (seq + 1, reason));
                }
                if (row.Seq > seq)
                {
                    rows.Add(row);
                    seq = row.Seq;
                    hash = row.Hash;
                }
                position = lineEnd + 1;
            }
        }
        return new Replay(rows, torn, null);
    }

    private static bool IsAllZero(ReadOnlySpan<byte> bytes) => !bytes.ContainsAnyExcept((byte)0);

    /// <summary>Removes every segment (after a replay has put their entries in the table) and starts a fresh one.</summary>
    public void Restart(long lastSeq)
    {
        System.IO.Directory.CreateDirectory(_directory);
        foreach (var segment in Segments())
            File.Delete(segment);
        Open(lastSeq);
    }

    private List<string> Segments() =>
        System.IO.Directory.GetFiles(_directory, "*" + Extension).Order(StringComparer.Ordinal).ToList();

    // ---- appending (one thread)

    /// <summary>Writes one batch of lines and makes it durable; <paramref name="lastSeq"/> is its newest entry.</summary>
    /// <exception cref="IOException">Nobody may be answered for this batch; the next one is written at the same place, chaining from the same head.</exception>
    public void Append(ReadOnlySpan<byte> lines, long lastSeq)
    {
        _file!.Append(lines);
        _lastSeq = lastSeq;
        if (_file.Length >= SegmentBytes)
            Rotate(lastSeq);
    }

    /// <summary>Moves on to a new segment; if it cannot be made, the batch stays durable and the old one grows instead.</summary>
    private void Rotate(long lastSeq)
    {
        var old = _file!;
        try
        {
            Open(lastSeq);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _file = old;
            return;
        }
        old.Dispose();
        lock (_closedLock)
            _closed.Add((old.Path, lastSeq));
    }

    private void Open(long lastSeq)
    {
        var path = Path.Combine(_directory, (lastSeq + 1).ToString("D20", CultureInfo.InvariantCulture) + Extension);
        (_file, _lastSeq) = (DurableAppendFile.Create(path, SegmentBytes, sync: _sync), lastSeq);
    }

    /// <summary>Deletes the closed segments whose every entry is in the table (called after a table commit).</summary>
    public void DeleteCovered(long tableSeq)
    {
        List<string> covered;
        lock (_closedLock)
        {
            covered = _closed.Where(s => s.LastSeq <= tableSeq).Select(s => s.Path).ToList();
            _closed.RemoveAll(s => s.LastSeq <= tableSeq);
        }
        foreach (var path in covered)
            File.Delete(path);
    }

    /// <summary>At a clean stop with everything in the table: no segment is left to replay.</summary>
    public void DeleteAll(long tableSeq)
    {
        if (tableSeq < _lastSeq)
            return;
        var path = _file?.Path;
        _file?.Dispose();
        _file = null;
        DeleteCovered(tableSeq);
        if (path is not null)
            File.Delete(path);
    }

    public void Dispose() => _file?.Dispose();

    // ---- the line format

    /// <summary>One entry as a JSON line, every field as stored in the table (so it hashes the same).</summary>
    public static void Write(IBufferWriter<byte> buffer, AuditRow e)
    {
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("seq", e.Seq);
            json.WriteString("time", e.Time);
            json.WriteString("user_id", e.UserId);
            json.WriteString("user_name", e.UserName);
            json.WriteString("source", e.Source);
            json.WriteString("method", e.Method);
            json.WriteString("action", e.Action);
            json.WriteString("target", e.Target);
            json.WriteString("outcome", e.Outcome);
            json.WriteNumber("status", e.Status);
            json.WriteString("request_id", e.RequestId);
            json.WriteString("prev_hash", e.PrevHash);
            json.WriteString("hash", e.Hash);
            json.WriteEndObject();
        }
        buffer.Write("\n"u8);
    }

    internal static AuditRow? Parse(ReadOnlySpan<byte> line)
    {
        try
        {
            var reader = new Utf8JsonReader(line);
            using var doc = JsonDocument.ParseValue(ref reader);
            var o = doc.RootElement;
            return new AuditRow
            {
                Seq = o.GetProperty("seq").GetInt64(),
                Time = o.GetProperty("time").GetString()!,
                UserId = o.GetProperty("user_id").GetString(),
                UserName = o.GetProperty("user_name").GetString(),
                Source = o.GetProperty("source").GetString()!,
                Method = o.GetProperty("method").GetString()!,
                Action = o.GetProperty("action").GetString()!,
                Target = o.GetProperty("target").GetString()!,
                Outcome = o.GetProperty("outcome").GetString()!,
                Status = o.GetProperty("status").GetInt64(),
                RequestId = o.GetProperty("request_id").GetString()!,
                PrevHash = o.GetProperty("prev_hash").GetString()!,
                Hash = o.GetProperty("hash").GetString()!,
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }
}
