using System.Formats.Tar;
using Kumo.Cli.Commands;

namespace Kumo.Cli.Tests.Commands;

public sealed class BuildContextTarTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kumo-tar-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void Write(string path, string text = "x")
    {
        var full = Path.Combine(_dir, "ctx", path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
    }

    private async Task<List<string>> PackAsync()
    {
        var tar = Path.Combine(_dir, "ctx.tar");
        await BuildContextTar.WriteAsync(Path.Combine(_dir, "ctx"), tar, CancellationToken.None);
        var names = new List<string>();
        await using var reader = new TarReader(File.OpenRead(tar));
        while (await reader.GetNextEntryAsync() is { } e) names.Add(e.Name.TrimEnd('/'));
        return names;
    }

    [Fact]
    public async Task Pack_LeavesOutWhatDockerignoreNames_AndTakesBackNegatedPaths()
    {
        Write("Dockerfile");
        Write("README.md");
        Write("app/main.sh");
        Write("app/notes.md");
        Write("logs/a.log");
        Write("logs/keep.log");
        Write("deep/x/y/z.tmp");
        Write(".dockerignore", "# comment\n*.md\n**/*.tmp\n/logs\n!logs/keep.log\n");

        var names = await PackAsync();

        Assert.Contains("Dockerfile", names);
        Assert.Contains("app/main.sh", names);
        Assert.Contains("logs/keep.log", names);
        // As in Docker, '*.md' is a pattern for the top level only; '**/' reaches any depth.
        Assert.Contains("app/notes.md", names);
        Assert.DoesNotContain("README.md", names);
        Assert.DoesNotContain("logs/a.log", names);
        Assert.DoesNotContain("deep/x/y/z.tmp", names);
    }

    [Fact]
    public async Task Pack_KeepsSymlinksAsLinks_WithoutFollowingThem()
    {
        Write("Dockerfile");
        File.CreateSymbolicLink(Path.Combine(_dir, "ctx", "etc"), "/etc");

        var tar = Path.Combine(_dir, "ctx.tar");
        await BuildContextTar.WriteAsync(Path.Combine(_dir, "ctx"), tar, CancellationToken.None);
        await using var reader = new TarReader(File.OpenRead(tar));
        var entries = new List<TarEntry>();
        while (await reader.GetNextEntryAsync() is { } e) entries.Add(e);

        var link = Assert.Single(entries, e => e.Name == "etc");
        Assert.Equal(TarEntryType.SymbolicLink, link.EntryType);
        Assert.DoesNotContain(entries, e => e.Name.StartsWith("etc/", StringComparison.Ordinal));
    }
}
