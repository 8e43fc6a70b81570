using System.CommandLine;
using System.Text;

namespace Kumo.Cli.Commands;

/// <summary>kumo admin backup | restore: the whole kumod database as one SQLite file.</summary>
internal static class AdminCommands
{
    private static readonly byte[] SqliteHeader = Encoding.ASCII.GetBytes("SQLite format 3\0");

    public static Command Create(CliContext cli)
    {
        var admin = new Command("admin", "Operate kumod itself");

        var backupFile = new Argument<string>("FILE") { Description = "Where to write the backup (replaced if it exists)" };
        var backup = new Command("backup", "Save a consistent copy of kumod's database")
        {
            backupFile,
        };
        cli.Examples(backup, "kumo admin backup kumo-$(date +%F).db");
        cli.SetAction(backup, async run =>
        {
            var path = Path.GetFullPath(run.Get(backupFile));
            var bytes = await DownloadAsync(run, path);
            run.Output.Write(new { file = path, bytes }, r => Output.Line($"backup written to {r.file} ({r.bytes} bytes)"));
            return KumoCli.Ok;
        });
        admin.Subcommands.Add(backup);

        var restoreFile = new Argument<string>("FILE") { Description = "A file written by kumo admin backup" };
        var restore = new Command("restore", "Replace kumod's database with a backup")
        {
            restoreFile,
        };
        cli.Examples(restore, "kumo admin restore kumo-2025-01-31.db");
        cli.SetAction(restore, async run =>
        {
            var path = Path.GetFullPath(run.Get(restoreFile));
            await using var source = OpenBackup(path);
            await run.Client.RestoreAsync(source, run.Cancellation);
            run.Output.Write(new { file = path, restored = true }, r => Output.Line($"kumod database restored from {r.file}"));
            return KumoCli.Ok;
        });
        admin.Subcommands.Add(restore);

        return admin;
    }

    /// <summary>The copy holds every secret kumod has: a private file.</summary>
    private static Task<long> DownloadAsync(Invocation run, string path) => PrivateFile.WriteAsync(path, async file =>
    {
        await run.Client.DownloadBackupAsync(file, run.Cancellation);
        return file.Length;
    });

    private static FileStream OpenBackup(string path)
    {
        if (!File.Exists(path))
            throw new UsageException($"{path} does not exist");
        var stream = File.OpenRead(path);
        var header = new byte[SqliteHeader.Length];
        if (stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length || !header.AsSpan().SequenceEqual(SqliteHeader))
        {
            stream.Dispose();
            throw new UsageException($"{path} is not an SQLite database (not a file from kumo admin backup?)");
        }
        stream.Position = 0;
        return stream;
    }
}
