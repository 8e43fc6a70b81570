using Dapper;
using Kumo.Server.Audit;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.TestSupport;

/// <summary>The audit table read and changed behind kumod's back, the way someone with access to the database file would.</summary>
internal static class AuditTable
{
    /// <summary>The table once every durable entry has been copied in from the journal (kumod does that lazily).</summary>
    public static async Task<List<AuditRow>> RowsAsync(this TestServer server)
    {
        await server.App.Services.GetRequiredService<AuditLog>().FlushToTableAsync(CancellationToken.None);
        return await RowsAsync(server.StateDir);
    }

    public static async Task<List<AuditRow>> RowsAsync(string stateDir)
    {
        await using var c = Open(stateDir);
        return (await c.QueryAsync<AuditRow>("SELECT * FROM audit ORDER BY id")).ToList();
    }

    public static Task TamperAsync(this TestServer server, string sql, object? args = null) => TamperAsync(server.StateDir, sql, args);

    /// <summary>Drops the append-only triggers (as an attacker would) and runs <paramref name="sql"/> on STATE/kumo.db.</summary>
    public static async Task TamperAsync(string stateDir, string sql, object? args = null)
    {
        await using var c = Open(stateDir);
        await c.ExecuteAsync("DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;");
        await c.ExecuteAsync(sql, args);
    }

    private static SqliteConnection Open(string stateDir)
    {
        var c = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = Path.Combine(stateDir, "kumo.db"),
            Pooling = false,
            DefaultTimeout = 30,
        }.ToString());
        c.Open();
        return c;
    }
}
