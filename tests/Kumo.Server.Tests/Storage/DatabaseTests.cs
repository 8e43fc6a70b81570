using Dapper;
using Kumo.Server.Storage;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Tests.Storage;

public sealed class DatabaseTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private Database _db = null!;

    public async Task InitializeAsync()
    {
        _db = new Database(_dir.File("kumo.db"));
        await _db.WriteAsync(ctx => ctx.Connection.Execute("CREATE TABLE probe (name TEXT PRIMARY KEY)", transaction: ctx.Transaction), CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _db.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task WriteAsync_With500ConcurrentWrites_CompletesAllInFarFewerCommits()
    {
        var before = _db.Commits;

        var writes = Enumerable.Range(0, 500).Select(i => _db.WriteAsync(ctx => Insert(ctx, $"w{i}"), CancellationToken.None)).ToList();
        await Task.WhenAll(writes);

        Assert.All(writes, w => Assert.True(w.IsCompletedSuccessfully));
        Assert.Equal(500, await CountAsync(_db));
        Assert.InRange(_db.Commits - before, 1, 499);
    }

    [Fact]
    public async Task WriteAsync_WhenOneWriteInABatchThrows_RollsBackOnlyThatWrite()
    {
        var log = new List<string>();
        var (gate, batchBefore) = await BlockWriterAsync();

        var a = _db.WriteAsync(ctx => Tracked(ctx, "a", log), CancellationToken.None);
        var b = _db.WriteAsync(ctx =>
        {
            Tracked(ctx, "b", log);
            throw new InvalidOperationException("b fails after its insert");
        }, CancellationToken.None);
        var c = _db.WriteAsync(ctx => Tracked(ctx, "c", log), CancellationToken.None);
        gate.Set();
        await Task.WhenAll(a, c);
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => b);

        Assert.Equal("b fails after its insert", e.Message);
        Assert.Equal(2, _db.Commits - batchBefore); // the blocking write's batch, then a, b and c together
        Assert.Equal(["a", "c"], await NamesAsync(_db));
        Assert.Equal(["rollback b", "commit a", "commit c"], log);
    }

    [Fact]
    public async Task BackupToAsync_ProducesADatabaseThatOpensAndHoldsTheRows()
    {
        await InsertAsync("a", "b", "c");
        var path = _dir.File("backup.db");

        await _db.BackupToAsync(path, CancellationToken.None);

        await using var copy = new Database(path);
        Assert.Equal(Migrations.Latest, copy.SchemaVersion);
        Assert.Equal(["a", "b", "c"], await NamesAsync(copy));
        using var c = copy.Open();
        Assert.Equal("ok", c.ExecuteScalar<string>("PRAGMA quick_check"));
    }

    [Fact]
    public async Task RestoreFromAsync_WithKumoBackup_ReplacesTheContent()
    {
        await InsertAsync("a", "b");
        var path = _dir.File("backup.db");
        await _db.BackupToAsync(path, CancellationToken.None);
        await InsertAsync("after-backup");

        await _db.RestoreFromAsync(path, CancellationToken.None);

        Assert.Equal(["a", "b"], await NamesAsync(_db));
        await InsertAsync("after-restore");
        Assert.Equal(["a", "after-restore", "b"], await NamesAsync(_db));
    }

    [Fact]
    public async Task RestoreFromAsync_WithOlderBackup_UpgradesItToTheLatestSchema()
    {
        var path = _dir.File("v1.db");
        using (var old = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            old.Open();
            old.Execute(Migrations.All[0] + "\nPRAGMA user_version = 1; CREATE TABLE probe (name TEXT PRIMARY KEY); INSERT INTO probe VALUES ('old');");
        }

        await _db.RestoreFromAsync(path, CancellationToken.None);

        Assert.Equal(["old"], await NamesAsync(_db));
        using var c = _db.Open();
        Assert.Equal(Migrations.Latest, Migrations.CurrentVersion(c));
    }

    [Fact]
    public async Task RestoreFromAsync_WithNonSqliteFile_IsRefusedAndKeepsTheContent()
    {
        await InsertAsync("kept");
        var path = _dir.File("garbage.db");
        await File.WriteAllTextAsync(path, string.Concat(Enumerable.Repeat("this is not a database ", 400)));

        var e = await Assert.ThrowsAsync<SqliteException>(() => _db.RestoreFromAsync(path, CancellationToken.None));

        Assert.Equal(26, e.SqliteErrorCode); // SQLITE_NOTADB
        Assert.Equal(["kept"], await NamesAsync(_db));
    }

    [Fact]
    public async Task RestoreFromAsync_WithSqliteFileThatIsNotAKumoBackup_IsRefusedAndKeepsTheContent()
    {
        await InsertAsync("kept");
        var path = _dir.File("other.db");
        using (var other = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            other.Open();
            other.Execute("CREATE TABLE nodes (id TEXT); CREATE TABLE recipes (id TEXT);");
        }

        var e = await Assert.ThrowsAsync<InvalidDataException>(() => _db.RestoreFromAsync(path, CancellationToken.None));

        Assert.Equal("the file is a SQLite database but not a Kumo backup", e.Message);
        Assert.Equal(["kept"], await NamesAsync(_db));
    }

    /// <summary>Parks the writer inside a write so that the writes queued next all land in one batch.</summary>
    private async Task<(ManualResetEventSlim Gate, long CommitsBefore)> BlockWriterAsync()
    {
        var before = _db.Commits;
        var gate = new ManualResetEventSlim();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = _db.WriteAsync(_ =>
        {
            entered.SetResult();
            gate.Wait(TimeSpan.FromSeconds(30));
        }, CancellationToken.None);
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return (gate, before);
    }

    private static void Tracked(WriteContext ctx, string name, List<string> log)
    {
        Insert(ctx, name);
        ctx.OnCommit(() => log.Add("commit " + name));
        ctx.OnRollback(() => log.Add("rollback " + name));
    }

    private static void Insert(WriteContext ctx, string name) =>
        ctx.Connection.Execute("INSERT INTO probe (name) VALUES (@name)", new { name }, ctx.Transaction);

    private Task InsertAsync(params string[] names) =>
        _db.WriteAsync(ctx => { foreach (var n in names) Insert(ctx, n); }, CancellationToken.None);

    private static Task<long> CountAsync(Database db) =>
        db.ReadAsync(c => c.ExecuteScalar<long>("SELECT count(*) FROM probe"), CancellationToken.None);

    private static Task<List<string>> NamesAsync(Database db) =>
        db.ReadAsync(c => c.Query<string>("SELECT name FROM probe ORDER BY name").ToList(), CancellationToken.None);
}
