using Microsoft.Data.Sqlite;

namespace Kumo.Server.Storage;

/// <summary>What a write can register to run after its transaction commits or rolls back.</summary>
public sealed class WriteContext
{
    private List<Action>? _onCommit;
    private List<Action>? _onRollback;

    private readonly Dictionary<string, SqliteCommand> _prepared;

    internal WriteContext(SqliteConnection connection, SqliteTransaction transaction, Dictionary<string, SqliteCommand> prepared)
    {
        Connection = connection;
        Transaction = transaction;
        _prepared = prepared;
    }

    /// <summary>
    /// Runs a hot statement through a command kept for the writer's lifetime, so SQLite prepares it once
    /// instead of on every call (what Dapper's fresh commands cost on the placement path).
    /// </summary>
    public int Execute(string sql, params (string Name, object? Value)[] parameters) => Prepared(sql, parameters).ExecuteNonQuery();

    /// <summary>Reads one row of a hot query through a kept command; null when there is no row.</summary>
    public T? QueryRow<T>(string sql, Func<SqliteDataReader, T> map, params (string Name, object? Value)[] parameters) where T : class
    {
        using var reader = Prepared(sql, parameters).ExecuteReader();
        return reader.Read() ? map(reader) : null;
    }

    private SqliteCommand Prepared(string sql, (string Name, object? Value)[] parameters)
    {
        if (!_prepared.TryGetValue(sql, out var cmd))
        {
            cmd = Connection.CreateCommand();
            cmd.CommandText = sql;
            foreach (var (name, _) in parameters) cmd.Parameters.Add(new SqliteParameter { ParameterName = name });
            _prepared[sql] = cmd;
        }
        cmd.Transaction = Transaction;
        for (var i = 0; i < parameters.Length; i++) cmd.Parameters[i].Value = parameters[i].Value ?? DBNull.Value;
        return cmd;
    }

    public SqliteConnection Connection { get; }
    public SqliteTransaction Transaction { get; }

    /// <summary>Runs once the batch holding this write is durable (e.g. notify watchers).</summary>
    public void OnCommit(Action action) => (_onCommit ??= []).Add(action);

    /// <summary>Runs if this write is undone (e.g. give back in-memory capacity).</summary>
    public void OnRollback(Action action) => (_onRollback ??= []).Add(action);

    internal void RunCommit() => _onCommit?.ForEach(a => a());

    internal void RunRollback()
    {
        if (_onRollback is null) return;
        for (var i = _onRollback.Count - 1; i >= 0; i--) _onRollback[i]();
        _onRollback = null;
        _onCommit = null;
    }
}

/// <summary>
/// The embedded SQLite store. Reads use pooled connections concurrently (WAL). All writes go through one writer
/// loop that groups whatever is queued into a single durable transaction (group commit): each write runs inside
/// its own savepoint, so one failing write does not undo its neighbours, and no caller is answered before the
/// batch's COMMIT has been fsynced.
/// </summary>
public sealed class Database : IAsyncDisposable
{
    private const int MaxBatch = 512;

    /// <summary>
    /// Tables a restore does not roll back: the audit log is the history of this server, including the restore
    /// itself, not state to rewind (and its chain head lives on in memory and in the signed checkpoint).
    /// </summary>
    internal static readonly IReadOnlyList<string> KeptOnRestore = ["audit"];

    private readonly string _connectionString;
    private readonly WorkQueue<IPendingWrite> _writes = new();
    private readonly SqliteConnection _writer;
    private readonly Thread _writerThread;
    private readonly TaskCompletionSource _writerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _exclusive = new(1, 1);
    private readonly Dictionary<string, SqliteCommand> _prepared = new(StringComparer.Ordinal);

    // The row classes (Rows.cs) rely on snake_case columns mapping to PascalCase properties; set it wherever the
    // store is used, not only in KumoServer.Build.
    static Database() => Dapper.DefaultTypeMap.MatchNamesWithUnderscores = true;

    public Database(string path)
    {
        Path = path;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        _writer = Open();
        try
        {
            Exec(_writer, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
            SchemaVersion = Migrations.Apply(_writer);
        }
        catch
        {
            // A refused database (e.g. from a newer kumod) must not stay open behind the caller's back.
            _writer.Dispose();
            SqliteConnection.ClearPool(_writer);
            throw;
        }
        // A thread of its own, not the pool's: the writer blocks in fsync on every batch, and on a small machine a
        // pool thread blocked there is a core the pool cannot use (and waking a pool thread costs a spin).
        _writerThread = new Thread(WriterLoop) { IsBackground = true, Name = "kumo-db-writer" };
        _writerThread.Start();
    }

    public string Path { get; }
    public int SchemaVersion { get; }

    /// <summary>Number of committed write batches; with group commit it grows slower than the number of writes.</summary>
    public long Commits { get; private set; }

    public SqliteConnection Open()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        Exec(c, "PRAGMA busy_timeout = 30000;");
        return c;
    }

    public async Task<T> ReadAsync<T>(Func<SqliteConnection, T> read, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        await using var c = Open();
        return read(c);
    }

    public Task<T> WriteAsync<T>(Func<WriteContext, T> write, CancellationToken ct)
    {
        var pending = new PendingWrite<T>(write);
        ObjectDisposedException.ThrowIf(!_writes.TryAdd(pending), this);
        return pending.Task.WaitAsync(ct);
    }

    public Task WriteAsync(Action<WriteContext> write, CancellationToken ct) =>
        WriteAsync<bool>(c => { write(c); return true; }, ct);

    /// <summary>Copies the live database into <paramref name="destinationPath"/> with SQLite's online backup.</summary>
    public async Task BackupToAsync(string destinationPath, CancellationToken ct)
    {
        await _exclusive.WaitAsync(ct);
        try
        {
            await using var source = Open();
            await using var dest = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = destinationPath, Pooling = false }.ToString());
            dest.Open();
            source.BackupDatabase(dest);
        }
        finally
        {
            _exclusive.Release();
        }
    }

    /// <summary>
    /// Replaces the whole database with the one at <paramref name="sourcePath"/> (upgraded to the current schema
    /// first). Runs as a write, so nothing interleaves with it.
    /// </summary>
    public async Task RestoreFromAsync(string sourcePath, CancellationToken ct)
    {
        await using (var check = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = sourcePath, Pooling = false }.ToString()))
        {
            check.Open();
            Exec(check, "PRAGMA journal_mode = DELETE;");
            using var cmd = check.CreateCommand();
            cmd.CommandText = "PRAGMA quick_check";
            if (cmd.ExecuteScalar() as string != "ok")
                throw new InvalidDataException("the backup file failed SQLite's integrity check");
            cmd.CommandText = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('nodes', 'instances', 'operations', 'images')";
            if (Convert.ToInt32(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) != 4)
                throw new InvalidDataException("the file is a SQLite database but not a Kumo backup");
            Migrations.Apply(check);
        }
        SqliteConnection.ClearAllPools();
        await _exclusive.WaitAsync(ct);
        try
        {
            // The writer loop applies it between batches; readers see the old or the new database.
            var restore = new PendingWrite<bool>(_ => true) { Restore = sourcePath };
            ObjectDisposedException.ThrowIf(!_writes.TryAdd(restore), this);
            await restore.Task.WaitAsync(ct);
        }
        finally
        {
            _exclusive.Release();
        }
    }

    private void WriterLoop()
    {
        try
        {
            var batch = new List<IPendingWrite>(MaxBatch);
            while (_writes.WaitForWork())
            {
                batch.Clear();
                while (batch.Count < MaxBatch && _writes.TryTake(out var w))
                {
                    if (w.Restore is not null)
                    {
                        if (batch.Count > 0) RunBatch(batch);
                        batch.Clear();
                        RunRestore(w);
                        continue;
                    }
                    batch.Add(w);
                }
                if (batch.Count > 0) RunBatch(batch);
            }
        }
        finally
        {
            _writerDone.TrySetResult();
        }
    }

    private void RunRestore(IPendingWrite w)
    {
        try
        {
            using var source = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = w.Restore, Pooling = false }.ToString());
            source.Open();
            foreach (var table in KeptOnRestore)
                CarryOver(source, table);
            source.BackupDatabase(_writer);
            DropPrepared();
            Exec(_writer, "PRAGMA journal_mode = WAL;");
            w.Complete();
        }
        catch (Exception e)
        {
            w.Fail(e);
        }
    }

    private void RunBatch(List<IPendingWrite> batch)
    {
        var contexts = new List<(IPendingWrite Write, WriteContext Context)>(batch.Count);
        try
        {
            using var tx = _writer.BeginTransaction(deferred: false);
            foreach (var w in batch)
            {
                var ctx = new WriteContext(_writer, tx, _prepared);
                ctx.Execute("SAVEPOINT w");
                try
                {
                    w.Run(ctx);
                    ctx.Execute("RELEASE w");
                    contexts.Add((w, ctx));
                }
                catch (Exception e)
                {
                    Exec(_writer, "ROLLBACK TO w; RELEASE w", tx);
                    ctx.RunRollback();
                    w.Fail(e);
                }
            }
            tx.Commit();
            Commits++;
        }
        catch (Exception e)
        {
            foreach (var (w, ctx) in contexts)
            {
                ctx.RunRollback();
                w.Fail(e);
            }
            return;
        }
        foreach (var (w, ctx) in contexts)
        {
            ctx.RunCommit();
            w.Complete();
        }
    }

    private void DropPrepared()
    {
        foreach (var c in _prepared.Values) c.Dispose();
        _prepared.Clear();
    }

    /// <summary>
    /// Replaces <paramref name="table"/> in the file about to be restored with the live one: same definition, indexes
    /// and triggers, same rows. Runs on the writer loop, so no write to the table can slip in between.
    /// </summary>
    private void CarryOver(SqliteConnection source, string table)
    {
        using (var attach = source.CreateCommand())
        {
            attach.CommandText = "ATTACH DATABASE $path AS live";
            attach.Parameters.AddWithValue("$path", Path);
            attach.ExecuteNonQuery();
        }
        try
        {
            using var tx = source.BeginTransaction();
            var schema = new List<(string Type, string Sql)>();
            using (var read = source.CreateCommand())
            {
                read.Transaction = tx;
                read.CommandText = "SELECT type, sql FROM live.sqlite_master WHERE tbl_name = $table AND sql IS NOT NULL";
                read.Parameters.AddWithValue("$table", table);
                using var rows = read.ExecuteReader();
                while (rows.Read())
                    schema.Add((rows.GetString(0), rows.GetString(1)));
            }
            // Dropping the table drops its indexes and triggers (which would refuse the delete) with it.
            Exec(source, $"DROP TABLE IF EXISTS main.\"{table}\"", tx);
            foreach (var (_, sql) in schema.Where(s => s.Type == "table"))
                Exec(source, sql, tx);
            Exec(source, $"INSERT INTO main.\"{table}\" SELECT * FROM live.\"{table}\"", tx);
            foreach (var (_, sql) in schema.Where(s => s.Type != "table"))
                Exec(source, sql, tx);
            tx.Commit();
        }
        finally
        {
            Exec(source, "DETACH DATABASE live");
        }
    }

    internal static void Exec(SqliteConnection c, string sql, SqliteTransaction? tx = null)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    public async ValueTask DisposeAsync()
    {
        _writes.Complete();
        await _writerDone.Task;
        DropPrepared();
        await _writer.DisposeAsync();
        _exclusive.Dispose();
        SqliteConnection.ClearAllPools();
    }

    private interface IPendingWrite
    {
        string? Restore { get; }
        void Run(WriteContext ctx);
        void Complete();
        void Fail(Exception e);
    }

    private sealed class PendingWrite<T>(Func<WriteContext, T> write) : IPendingWrite
    {
        private readonly TaskCompletionSource<T> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;

        public string? Restore { get; init; }
        public Task<T> Task => _tcs.Task;
        public void Run(WriteContext ctx) => _result = write(ctx);
        public void Complete() => _tcs.TrySetResult(_result!);
        public void Fail(Exception e) => _tcs.TrySetException(e);
    }
}
