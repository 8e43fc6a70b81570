using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Dapper;
using Kumo.Core;
using Kumo.Server.Storage;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Audit;

/// <summary>
/// The tamper-evident audit log: an append-only, hash-chained table, and a signed checkpoint of the chain head kept
/// outside the database. An entry is durable once it is in the <see cref="AuditJournal"/>, written with group commit;
/// the table is filled from there in large batches (every <see cref="TableInterval"/>, or at once before anything
/// reads it), and the checkpoint vouches only for what the table holds.
/// </summary>
/// <remarks>
/// Group commit without a thread of its own: a request that finds nobody writing writes every queued entry (its own
/// among them) on its own thread, and entries that arrive meanwhile wait for the next batch. When the write is done and
/// entries are waiting, the next batch is queued as a thread-pool work item behind the work already waiting there. So
/// on an idle server an entry is written at once, with no thread to wake, and on a saturated one entries gather while
/// the CPUs serve the requests ahead of it: the busier the server, the more entries share a durable write. A dedicated
/// journal thread with pacing gave 2-3 entries per durable write at 8 callers and about 10 at 64, and cost 20-40 µs more
/// CPU per read on a 2-vCPU VM, where each wake-up of a sleeping thread is expensive (see the README's Performance).
/// </remarks>
public sealed partial class AuditLog : IAsyncDisposable
{
    private const string Columns = "id, seq, time, user_id, user_name, source, method, action, target, outcome, status, request_id, prev_hash, hash";

    private const string InsertSql =
        """
        INSERT INTO audit (seq, time, user_id, user_name, source, method, action, target, outcome, status, request_id, prev_hash, hash)
        VALUES ($seq, $time, $userId, $userName, $source, $method, $action, $target, $outcome, $status, $requestId, $prevHash, $hash)
        """;

    /// <summary>How long a durable entry may wait in the journal before it is copied into the table.</summary>
    internal static readonly TimeSpan TableInterval = TimeSpan.FromMilliseconds(200);

    /// <summary>Entries waiting for the table past this count are copied at once.</summary>
    private const int TableBatch = 4096;

    private const int MaxJournalBatch = 1024;

    private static readonly TimeSpan FlushPatience = TimeSpan.FromSeconds(10);

    private readonly Database _db;
    private readonly TimeProvider _time;
    private readonly ILogger<AuditLog> _logger;
    private readonly AuditCheckpointFile _file;
    private readonly AuditJournal _journal;
    private readonly Channel<bool> _committedSignal = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly Lock _checkpointLock = new();
    private Task _checkpointLoop = Task.CompletedTask;
    private bool _started;

    // Appends: queued by requests, made durable by whichever thread holds _writing (1 while a batch is written).
    private readonly ConcurrentQueue<PendingAppend> _appends = new();
    private volatile bool _appendsClosed;
    private volatile bool _appendsDrained;
    private int _disposed;
    private int _writing;
    private readonly List<PendingAppend> _batch = new(MaxJournalBatch);
    private readonly ArrayBufferWriter<byte> _lines = new(64 * 1024);

    // Durable entries on their way into the table, copied by the table loop.
    private readonly ConcurrentQueue<AuditRow> _forTable = new();
    private readonly SemaphoreSlim _tableKick = new(0, 1);
    private List<AuditRow> _tableRetry = [];
    private Task _tableLoop = Task.CompletedTask;
    private readonly CancellationTokenSource _stopTable = new();
    private TaskCompletionSource _tableProgress = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Journal batches made durable so far (one durable write each); with group commit fewer than entries.</summary>
    public long JournalBatches { get; private set; }

    /// <summary>The newest entry's sequence number that is durable in the journal.</summary>
    internal long JournalSeq => Volatile.Read(ref _journalSeq);

    // The head the next append chains from; only the writer (see _writing) touches it once Start has run.
    private Head _head = Head.Empty;

    // The newest entry that is durable in the journal, and the newest one in the table.
    private long _journalSeq;
    private long _tableSeq;

    // The newest head in the table: what the checkpoint may vouch for.
    private volatile Head _committed = Head.Empty;
    private Head _checkpointed = Head.Empty;
    private (long? Seq, string Reason)? _fault;

    public AuditLog(Database db, KumoServerOptions options, TimeProvider time, ILogger<AuditLog> logger)
    {
        _db = db;
        _time = time;
        _logger = logger;
        _file = new AuditCheckpointFile(options.StateDir);
        _journal = new AuditJournal(options.StateDir, sync: !options.BenchAuditJournalWithoutSync);
    }

    /// <summary>
    /// Copies what a crash left in the journal into the table, loads the chain head and cross-checks it with the
    /// signed checkpoint. A mismatch is logged and carried forward in every later checkpoint; kumod still starts.
    /// </summary>
    public void Start()
    {
        AllowAThreadForTheWriter();
        var createdKey = _file.LoadOrCreateKey();
        var head = _db.ReadAsync(c => c.QuerySingleOrDefault<(long Seq, string Hash)?>("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"),
            CancellationToken.None).GetAwaiter().GetResult() is { } h ? new Head(h.Seq, h.Hash) : Head.Empty;
        var read = _file.Read();
        _fault = read.Checkpoint is { Fault: not null } previous ? (previous.FaultSeq, previous.Fault) : null;

        var replay = _journal.ReadSince(head.Seq, head.Hash);
        if (replay.Rows.Count > 0)
        {
            _db.WriteAsync(w => Insert(w, replay.Rows), CancellationToken.None).GetAwaiter().GetResult();
            head = new Head(replay.Rows[^1].Seq, replay.Rows[^1].Hash);
            LogReplayed(_logger, replay.Rows.Count, _journal.Directory);
        }
        if (replay.TornTail is { } torn)
            LogTornTail(_logger, torn);
        if (replay.Damage is { } damage)
        {
            LogJournalDamaged(_logger, damage.Reason);
            _fault ??= (damage.Seq, $"{damage.Reason} (found when kumod started at {AuditChain.FormatTime(_time.GetUtcNow())})");
        }
        _journal.Restart(head.Seq);

        if (createdKey && read.State == CheckpointState.Missing && head.Seq == 0)
            LogKeyCreated(_logger, _file.KeyPath);
        var found = Compare(read, head);
        if (found is { } f)
        {
            LogCheckpointMismatch(_logger, f.Reason);
            _fault ??= (f.Seq, $"{f.Reason} (found when kumod started at {AuditChain.FormatTime(_time.GetUtcNow())})");
        }
        _head = head;
        _committed = head;
        _journalSeq = head.Seq;
        _tableSeq = head.Seq;
        WriteCheckpoint(force: true);
        _started = true;
        _checkpointLoop = Task.Run(CheckpointLoopAsync);
        _tableLoop = Task.Run(TableLoopAsync);
    }

    /// <summary>
    /// A batch's durable write blocks the thread-pool thread that makes it (about 150 µs on a 2-vCPU VM), and the
    /// pool cannot tell: with its default of one running thread per core, a core sat idle through every write. One
    /// thread more measured 3-5% more audited reads/s at 8 to 32 callers, and no change past that.
    /// </summary>
    private static void AllowAThreadForTheWriter()
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        if (workers < Environment.ProcessorCount + 1)
            ThreadPool.SetMinThreads(Environment.ProcessorCount + 1, io);
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

    // ---- appending

    /// <summary>
    /// Appends one entry; completes once the journal batch holding it is durable. When nobody is writing, the caller's
    /// thread writes the batch (one durable write) before this returns.
    /// </summary>
    internal Task AppendAsync(AuditRow entry, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(!_started || _appendsClosed, this);
        var pending = new PendingAppend(entry);
        _appends.Enqueue(pending);
        if (_appendsDrained)
            FailLeftovers(); // closed while queueing, after the last batch: nobody will write it
        else if (Interlocked.CompareExchange(ref _writing, 1, 0) == 0)
            WriteQueued();
        return pending.Done.Task.WaitAsync(ct);
    }

    /// <summary>Writes one batch of what is queued while holding <see cref="_writing"/>, then lets it go.</summary>
    private void WriteQueued()
    {
        try
        {
            _batch.Clear();
            _lines.ResetWrittenCount();
            while (_batch.Count < MaxJournalBatch && _appends.TryDequeue(out var pending))
                _batch.Add(pending);
            if (_batch.Count > 0)
                WriteBatch(_batch, _lines);
        }
        finally
        {
            _batch.Clear();
            // A full fence: an entry queued after the look below finds _writing clear and writes itself.
            Interlocked.Exchange(ref _writing, 0);
        }
        // Entries that came while this batch was written: the next batch goes behind the work already waiting for a
        // thread-pool thread, so on a busy server more entries join it, and this caller's answer is not held up.
        if (!_appends.IsEmpty && Interlocked.CompareExchange(ref _writing, 1, 0) == 0)
            ThreadPool.UnsafeQueueUserWorkItem(static log => log.WriteQueued(), this, preferLocal: false);
    }

    /// <summary>At shutdown: waits for the writer, then writes whatever is still queued.</summary>
    private async Task DrainAppendsAsync()
    {
        _appendsClosed = true;
        while (true)
        {
            while (Interlocked.CompareExchange(ref _writing, 1, 0) != 0)
                await Task.Delay(1);
            if (_appends.IsEmpty)
                break;
            WriteQueued();
        }
        // Keep holding _writing: nothing may write after the drain, and whatever is queued from now on is refused.
        _appendsDrained = true;
        FailLeftovers();
    }

    private void FailLeftovers()
    {
        while (_appends.TryDequeue(out var late))
            late.Done.TrySetException(new ObjectDisposedException(nameof(AuditLog)));
    }

    private void WriteBatch(List<PendingAppend> batch, ArrayBufferWriter<byte> lines)
    {
        var head = _head;
        try
        {
            foreach (var pending in batch)
            {
                var entry = pending.Entry;
                entry.Seq = head.Seq + 1;
                entry.PrevHash = head.Hash;
                entry.Hash = AuditChain.Hash(entry);
                AuditJournal.Write(lines, entry);
                head = new Head(entry.Seq, entry.Hash);
            }
            _journal.Append(lines.WrittenSpan, head.Seq);
        }
        catch (Exception e)
        {
            // Whatever went wrong, it stays with this batch: its requests get 500, the next batch chains from the
            // same head.
            LogJournalFailed(_logger, _journal.Directory, e);
            foreach (var pending in batch)
                pending.Done.TrySetException(e);
            return;
        }
        _head = head;
        JournalBatches++;
        Volatile.Write(ref _journalSeq, head.Seq);
        foreach (var pending in batch)
            _forTable.Enqueue(pending.Entry);
        if (_forTable.Count >= TableBatch)
            KickTable();
        foreach (var pending in batch)
            pending.Done.TrySetResult();
    }

    private sealed class PendingAppend(AuditRow entry)
    {
        public AuditRow Entry { get; } = entry;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    // ---- copying into the table

    private void KickTable()
    {
        try
        {
            _tableKick.Release();
        }
        catch (SemaphoreFullException)
        {
            // already kicked
        }
    }

    private async Task TableLoopAsync()
    {
        var stop = _stopTable.Token;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await _tableKick.WaitAsync(TableInterval, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            await CopyToTableAsync();
        }
    }

    /// <summary>Copies every durable entry not yet in the table in one write; on failure keeps them for the next try.</summary>
    private async Task CopyToTableAsync()
    {
        var rows = _tableRetry;
        _tableRetry = [];
        while (_forTable.TryDequeue(out var row))
            rows.Add(row);
        if (rows.Count == 0)
            return;
        var last = new Head(rows[^1].Seq, rows[^1].Hash);
        try
        {
            await _db.WriteAsync(w =>
            {
                Insert(w, rows);
                w.OnCommit(() =>
                {
                    _committed = last;
                    _committedSignal.Writer.TryWrite(true);
                });
            }, CancellationToken.None);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Still durable in the journal (and replayed at the next start if it comes to that): try again later.
            LogTableFailed(_logger, rows.Count, e);
            _tableRetry = rows;
            return;
        }
        Volatile.Write(ref _tableSeq, last.Seq);
        try
        {
            _journal.DeleteCovered(last.Seq);
        }
        catch (IOException e)
        {
            LogJournalFailed(_logger, _journal.Directory, e);
        }
        Interlocked.Exchange(ref _tableProgress, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    private static void Insert(WriteContext w, List<AuditRow> rows)
    {
        foreach (var e in rows)
        {
            w.Execute(InsertSql,
                ("$seq", e.Seq), ("$time", e.Time), ("$userId", e.UserId), ("$userName", e.UserName),
                ("$source", e.Source), ("$method", e.Method), ("$action", e.Action), ("$target", e.Target),
                ("$outcome", e.Outcome), ("$status", e.Status), ("$requestId", e.RequestId),
                ("$prevHash", e.PrevHash), ("$hash", e.Hash));
        }
    }

    /// <summary>
    /// Waits until every entry durable now is in the table, so whoever reads the table sees their own calls. While the
    /// table cannot be written it gives up after <see cref="FlushPatience"/> and the reader sees the table as it is.
    /// </summary>
    internal async Task FlushToTableAsync(CancellationToken ct)
    {
        var target = Volatile.Read(ref _journalSeq);
        var deadline = _time.GetUtcNow() + FlushPatience;
        while (Volatile.Read(ref _tableSeq) < target && _time.GetUtcNow() < deadline)
        {
            var progress = Volatile.Read(ref _tableProgress).Task;
            if (Volatile.Read(ref _tableSeq) >= target)
                break;
            KickTable();
            await progress.WaitAsync(TimeSpan.FromSeconds(1), ct).ContinueWith(_ => { }, TaskScheduler.Default);
            ct.ThrowIfCancellationRequested();
        }
    }

    // ---- reading

    /// <summary>Newest first; <paramref name="user"/> matches a user name or id.</summary>
    public async Task<IReadOnlyList<AuditEntry>> ListAsync(string? user, DateTimeOffset? since, int limit, CancellationToken ct)
    {
        await FlushToTableAsync(ct);
        var where = new List<string>(2);
        if (user is not null)
            where.Add("(user_name = @user OR user_id = @user)");
        if (since is not null)
            where.Add("time >= @since");
        var sql = $"SELECT {Columns} FROM audit {(where.Count == 0 ? "" : "WHERE " + string.Join(" AND ", where))} ORDER BY seq DESC LIMIT @limit";
        var args = new { user, since = since is { } s ? AuditChain.FormatTime(s) : null, limit };
        return await _db.ReadAsync<IReadOnlyList<AuditEntry>>(c => c.Query<AuditRow>(sql, args).Select(r => r.ToApi()).ToList(), ct);
    }

    /// <summary>Every entry, oldest first, read lazily from one snapshot.</summary>
    public async IAsyncEnumerable<AuditEntry> ExportAsync([EnumeratorCancellation] CancellationToken ct)
    {
        await FlushToTableAsync(ct);
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
        await FlushToTableAsync(ct);
        // The checkpoint first: it only ever vouches for entries in the table, so the table read after it holds at
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

    /// <summary>Copies everything durable into the table and anchors it now (tests use it instead of waiting).</summary>
    internal async Task FlushAsync(CancellationToken ct)
    {
        await FlushToTableAsync(ct);
        WriteCheckpoint(force: false);
    }

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
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
            return;
        if (_started)
            await DrainAppendsAsync();
        _stopTable.Cancel();
        await _tableLoop;
        if (_started)
            await CopyToTableAsync();
        _committedSignal.Writer.TryComplete();
        await _checkpointLoop;
        if (!_started)
            return; // never loaded: writing now would replace a good checkpoint with an empty one
        try
        {
            if (_tableRetry.Count == 0 && _forTable.IsEmpty)
                _journal.DeleteAll(Volatile.Read(ref _tableSeq));
            _journal.Dispose();
            WriteCheckpoint(force: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogCheckpointFailed(_logger, _file.Path, e);
        }
        _stopTable.Dispose();
    }

    private sealed record Head(long Seq, string Hash)
    {
        public static readonly Head Empty = new(0, AuditChain.Genesis);
    }

    [LoggerMessage(LogLevel.Information, "audit: created the checkpoint key {KeyPath}")]
    private static partial void LogKeyCreated(ILogger logger, string keyPath);

    [LoggerMessage(LogLevel.Error, "audit: the log does not match its signed checkpoint: {Reason}; kumod goes on and every verify reports it")]
    private static partial void LogCheckpointMismatch(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Warning, "audit: copied {Count} entries from the journal {Directory} into the table (kumod had stopped before it could)")]
    private static partial void LogReplayed(ILogger logger, int count, string directory);

    [LoggerMessage(LogLevel.Information, "audit: dropped {What}; no request was answered for it")]
    private static partial void LogTornTail(ILogger logger, string what);

    [LoggerMessage(LogLevel.Error, "audit: {Reason}; the rest is kept as *.damaged and every verify reports it")]
    private static partial void LogJournalDamaged(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Error, "audit: cannot write the journal in {Directory}; requests are answered 500 until it works again")]
    private static partial void LogJournalFailed(ILogger logger, string directory, Exception e);

    [LoggerMessage(LogLevel.Error, "audit: cannot copy {Count} journal entries into the table; they stay durable in the journal and are retried")]
    private static partial void LogTableFailed(ILogger logger, int count, Exception e);

    [LoggerMessage(LogLevel.Error, "audit: cannot write the checkpoint {Path}")]
    private static partial void LogCheckpointFailed(ILogger logger, string path, Exception e);
}

