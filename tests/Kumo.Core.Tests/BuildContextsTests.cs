using System.Formats.Tar;
using System.Text;

namespace Kumo.Core.Tests;

public sealed class BuildContextsTests
{
    private static async Task<string> CheckAsync(string? dockerfile, params TarEntry[] entries)
    {
        var tar = new MemoryStream();
        await using (var w = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
            foreach (var e in entries) await w.WriteEntryAsync(e);
        tar.Position = 0;
        return await BuildContexts.CheckAsync(tar, dockerfile, CancellationToken.None);
    }

    private static PaxTarEntry File(string name, string text = "x") =>
        new(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)) };

    private static PaxTarEntry Link(string name, string target) => new(TarEntryType.SymbolicLink, name) { LinkName = target };

    [Theory]
    [InlineData("a/b/../c", "a/c")]
    [InlineData("./Dockerfile", "Dockerfile")]
    [InlineData("a//b/", "a/b")]
    [InlineData("../x", null)]
    [InlineData("a/../../x", null)]
    [InlineData("/etc/passwd", null)]
    public void Normalize_ResolvesInsideTheContext_AndRejectsEscapes(string path, string? expected) =>
        Assert.Equal(expected, BuildContexts.Normalize(path));

    [Fact]
    public async Task Check_PrefersContainerfile_OverDockerfile_WhenNoneIsNamed()
    {
        Assert.Equal("Containerfile", await CheckAsync(null, File("Dockerfile"), File("./Containerfile")));
        Assert.Equal("Dockerfile", await CheckAsync(null, File("Dockerfile")));
        Assert.Equal("build/App.df", await CheckAsync("./build/App.df", File("build/App.df")));
    }

    [Fact]
    public async Task Check_AcceptsLinksThatStayInside()
    {
        Assert.Equal("Dockerfile", await CheckAsync(null, File("Dockerfile"), File("data/real"), Link("sub/link", "../data/real")));
    }

    [Theory]
    [InlineData("../evil", "points outside the build directory")]
    [InlineData("/abs", "points outside the build directory")]
    public async Task Check_RefusesEntriesOutsideTheContext(string name, string message)
    {
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => CheckAsync(null, File("Dockerfile"), File(name)));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("sub/link", "../../etc/passwd")]
    [InlineData("link", "/etc/passwd")]
    public async Task Check_RefusesLinksThatLeaveTheContext(string name, string target)
    {
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => CheckAsync(null, File("Dockerfile"), Link(name, target)));
        Assert.Contains($"link '{name}' points outside the build directory", e.Message);
    }

    [Fact]
    public async Task Check_RefusesDevices_AndAMissingBuildFile()
    {
        var device = await Assert.ThrowsAsync<InvalidDataException>(() => CheckAsync(null, File("Dockerfile"), new PaxTarEntry(TarEntryType.CharacterDevice, "tty")));
        Assert.Contains("only files, directories and links", device.Message);
        var none = await Assert.ThrowsAsync<InvalidDataException>(() => CheckAsync(null, File("app.txt")));
        Assert.Contains("no Containerfile or Dockerfile", none.Message);
        var named = await Assert.ThrowsAsync<InvalidDataException>(() => CheckAsync("Other", File("Dockerfile")));
        Assert.Contains("has no 'Other'", named.Message);
        var outside = await Assert.ThrowsAsync<InvalidDataException>(() => CheckAsync("../Dockerfile", File("Dockerfile")));
        Assert.Contains("must be a relative path inside", outside.Message);
    }
}
