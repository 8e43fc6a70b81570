using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Dapper;
using Kumo.Core;
using Kumo.Server.Storage;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Audit;

/// <summary>
/// The tamper-evident audit log: an append-only, hash-chained table written through the store's group commit, and a
/// signed checkpoint of the chain head kept outside the database.
/// </summary>
public sealed partial class AuditLog : IAsyncDisposable
{
    private const string Columns = "id, seq, time, user_id, user_name, source, method, action, target, outcome, status, request_id, prev_hash, hash";

    private readonly Database _db;
    private readonly TimeProvider _time;
    private readonly ILogger<AuditLog> _logger;
    private readonly AuditCheckpointFile _file;
    private readonly Channel<bool> _committedSignal = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly Lock _checkpointLock = new();
    private Task _checkpointLoop = Task.CompletedTask;
    private bool _started;

    // The head the next append chains from. Only the writer loop touches it once Start has run: it advances inside a
    // write and steps back when that write is rolled back.
    private Head _head = Head.Empty;

    // The newest head whose batch is durable: what the checkpoint may vouch for.
    private volatile Head _committed = Head.Empty;
    private Head _checkpointed = Head.Empty;
    private (long? Seq, string Reason)? _fault;

    public AuditLog(Database db, KumoServerOptions options, TimeProvider time, ILogger<AuditLog> logger)
    {
        _db = db;
        _time = time;
        _logger = logger;
        _file = new AuditCheckpointFile(options.StateDir);
    }

    /// <summary>Loads the chain head from the table and cross-checks it with the signed checkpoint. A mismatch is logged and carried forward in every later checkpoint; kumod still starts.</summary>
    public void Start()
    {
        var createdKey = _file.LoadOrCreateKey();
        var head = _db.ReadAsync(c => c.QuerySingleOrDefault<(long Seq, string Hash)?>("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"),
            CancellationToken.None).GetAwaiter().GetResult() is { } h ? new Head(h.Seq, h.Hash) : Head.Empty;
        var read = _file.Read();
        if (createdKey && read.State == CheckpointState.Missing && head.Seq == 0)
            LogKeyCreated(_logger, _file.KeyPath);
        _fault = read.Checkpoint is { Fault: not null } previous ? (previous.FaultSeq, previous.Fault) : null;
        var found = Compare(read, head);
        if (found is { } f)
        {
            LogCheckpointMismatch(_logger, f.Reason);
            _fault ??= (f.Seq, $"{f.Reason} (found when kumod started at {AuditChain.FormatTime(_time.GetUtcNow())})");
        }
        _head = head;
        _committed = head;
        WriteCheckpoint(force: true);
        _started = true;
        _checkpointLoop = Task.Run(CheckpointLoopAsync);
    }

    /// <summary>What is wrong between the checkpoint and the table's head, if anything.</summary>
    private (long? Seq, string Reason)? Compare(CheckpointRead read, Head head)
    {
        switch (read.State)
        {
            case CheckpointState.Missing:
                return head.Seq == 0 ? null : (null, $"the checkpoint {_file.Path} is missing but the log holds {head.Seq} entries");
            case CheckpointState.Unreadable:
                return (null, $"the checkpoint {_file.Path} cannot be read ({read.Error})");
            case CheckpointState.BadSignature:
                return (null, $"the checkpoint {_file.Path} has a bad signature (forged, altered, or the key {_file.KeyPath} was replaced)");
        }
        var checkpoint = read.Checkpoint!;
        if (checkpoint.Count > head.Seq)
        {
            return (head.Seq + 1, $"entries {head.Seq + 1} to {checkpoint.Count} are missing: the signed checkpoint vouched for "
                + $"{checkpoint.Count} entries, the log ended at {head.Seq}");
        }
        var anchored = checkpoint.Count == 0
            ? AuditChain.Genesis
            : _db.ReadAsync(c => c.QuerySingleOrDefault<string>("SELECT hash FROM audit WHERE seq = @seq", new { seq = checkpoint.Count }),
                CancellationToken.None).GetAwaiter().GetResult();
        return anchored == checkpoint.Hash
            ? null
            : (checkpoint.Count, $"entry {checkpoint.Count} differs from the one the signed checkpoint vouched for");
    }

    /// <summary>Appends one entry; completes once the batch holding it is durable.</summary>
    internal Task AppendAsync(AuditRow entry, CancellationToken ct) => _db.WriteAsync(w => Append(w, entry), ct);

    /// <summary>Appends inside a write that may hold other changes; the entry shares that write's fate.</summary>
    internal void Append(WriteContext w, AuditRow entry)
    {
        var previous = _head;
        entry.Seq = previous.Seq + 1;
        entry.PrevHash = previous.Hash;
        entry.Hash = AuditChain.Hash(entry);
        w.Connection.Execute(
            """
            INSERT INTO audit (seq, time, user_id, user_name, source, method, action, target, outcome, status, request_id, prev_hash, hash)
            VALUES (@Seq, @Time, @UserId, @UserName, @Source, @Method, @Action, @Target, @Outcome, @Status, @RequestId, @PrevHash, @Hash)
            """, entry, w.Transaction);
        var next = new Head(entry.Seq, entry.Hash);
        _head = next;
        // A failed batch rolls its writes back in any order: step back only while the head is at or past this entry.
        w.OnRollback(() =>
        {
            if (_head.Seq >= next.Seq)
                _head = previous;
        });
        w.OnCommit(() =>
        {
            _committed = next;
            _committedSignal.Writer.TryWrite(true);
        });
    }

    // ---- reading

    /// <summary>Newest first; <paramref name="user"/> matches a user name or id.</summary>
    public Task<IReadOnlyList<AuditEntry>> ListAsync(string? user, DateTimeOffset? since, int limit, CancellationToken ct)
    {
        var where = new List<string>(2);
        if (user is not null)
            where.Add("(user_name = @user OR user_id = @user)");
        if (since is not null)
            where.Add("time >= @since");
        var sql = $"SELECT {Columns} FROM audit {(where.Count == 0 ? "" : "WHERE " + string.Join(" AND ", where))} ORDER BY seq DESC LIMIT @limit";
        var args = new { user, since = since is { } s ? AuditChain.FormatTime(s) : null, limit };
        return _db.ReadAsync<IReadOnlyList<AuditEntry>>(c => c.Query<AuditRow>(sql, args).Select(r => r.ToApi()).ToList(), ct);
    }

    /// <summary>Every entry, oldest first, read lazily from one snapshot.</summary>
    public async IAsyncEnumerable<AuditEntry> ExportAsync([EnumeratorCancellation] CancellationToken ct)
    {
        // One SELECT reads one snapshot, however long the caller takes to consume it.
        await using var c = _db.Open();
        foreach (var row in c.Query<AuditRow>($"SELECT {Columns} FROM audit ORDER BY id", buffered: false))
        {
            ct.ThrowIfCancellationRequested();
            yield return row.ToApi();
        }
    }

    /// <summary>Walks the whole chain and checks it against the signed checkpoint.</summary>
    public async Task<AuditVerification> VerifyAsync(CancellationToken ct)
    {
        // The checkpoint first: it only ever vouches for committed entries, so the table read after it holds at
        // least as many, even while requests keep arriving.
        var read = _file.Read();
        return await _db.ReadAsync(c => AuditVerifier.Verify(c.Query<AuditRow>($"SELECT {Columns} FROM audit ORDER BY id", buffered: false), read), ct);
    }

    // ---- the checkpoint

    private async Task CheckpointLoopAsync()
    {
        while (await _committedSignal.Reader.WaitToReadAsync())
        {
            _committedSignal.Reader.TryRead(out _);
            try
            {
                WriteCheckpoint(force: false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                LogCheckpointFailed(_logger, _file.Path, e);
            }
        }
    }

    /// <summary>Anchors the newest committed head now (tests use it instead of waiting for the background write).</summary>
    internal void FlushCheckpoint() => WriteCheckpoint(force: false);

    private void WriteCheckpoint(bool force)
    {
        lock (_checkpointLock)
        {
            var head = _committed;
            if (!force && head == _checkpointed)
                return;
            _file.Write(new AuditCheckpoint(head.Seq, head.Hash, _fault?.Seq, _fault?.Reason));
            _checkpointed = head;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _committedSignal.Writer.TryComplete();
        await _checkpointLoop;
        if (!_started)
            return; // never loaded: writing now would replace a good checkpoint with an empty one
        try
        {
            WriteCheckpoint(force: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogCheckpointFailed(_logger, _file.Path, e);
        }
    }

    private sealed record Head(long Seq, string Hash)
    {
        public static readonly Head Empty = new(0, AuditChain.Genesis);
    }

    [LoggerMessage(LogLevel.Information, "audit: created the checkpoint key {KeyPath}")]
    private static partial void LogKeyCreated(ILogger logger, string keyPath);

    [LoggerMessage(LogLevel.Error, "audit: the log does not match its signed checkpoint: {Reason}; kumod goes on and every verify reports it")]
    private static partial void LogCheckpointMismatch(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Error, "audit: cannot write the checkpoint {Path}")]
    private static partial void LogCheckpointFailed(ILogger logger, string path, Exception e);
}
