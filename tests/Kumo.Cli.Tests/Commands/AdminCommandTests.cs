using System.Text;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Cli.Tests.Commands;

public sealed class AdminCommandTests
{
    private static readonly byte[] Database = [.. Encoding.ASCII.GetBytes("SQLite format 3\0"), .. new byte[4096]];

    [Fact]
    public async Task BackupThenRestore_RoundTripsTheDatabaseThroughAPrivateFile()
    {
        byte[]? restored = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            app.MapGet("/api/v1/admin/backup", () => Results.Bytes(Database, "application/octet-stream"));
            app.MapPost("/api/v1/admin/restore", async (HttpContext context) =>
            {
                using var copy = new MemoryStream();
                await context.Request.Body.CopyToAsync(copy);
                restored = copy.ToArray();
                return Results.NoContent();
            });
        });
        using var dir = new TempDir();
        var file = dir.File("kumo.db");

        var backup = await CliRunner.RunAsync(kumod.Url, "admin", "backup", file);
        var restore = await CliRunner.RunAsync(kumod.Url, "admin", "restore", file);

        Assert.Equal(0, backup.ExitCode);
        Assert.Equal($"backup written to {file} ({Database.Length} bytes)\n", backup.Out);
        Assert.Equal(Database, await File.ReadAllBytesAsync(file));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        Assert.Equal(0, restore.ExitCode);
        Assert.Equal(Database, restored);
    }

    [Fact]
    public async Task Restore_OfAFileThatIsNotSqlite_FailsWithoutUploading()
    {
        await using var kumod = await FakeKumod.StartAsync(_ => { });
        using var dir = new TempDir();
        var file = dir.File("notes.txt");
        await File.WriteAllTextAsync(file, "hello");

        var result = await CliRunner.RunAsync(kumod.Url, "admin", "restore", file);

        Assert.Equal(1, result.ExitCode);
        Assert.Equal([$"error: {file} is not an SQLite database (not a file from kumo admin backup?)"], result.ErrLines);
        Assert.Empty(kumod.Requests);
    }
}
