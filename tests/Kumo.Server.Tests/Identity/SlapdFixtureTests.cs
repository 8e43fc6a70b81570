namespace Kumo.Server.Tests.Identity;

[Trait("Category", "Slow")]
public sealed class SlapdFixtureTests
{
    [Fact]
    public async Task Dispose_KillsSlapdAndRemovesItsDirectory()
    {
        var slapd = new SlapdFixture();
        await slapd.InitializeAsync();
        var pid = slapd.ProcessId!.Value;
        var dir = slapd.WorkDirectory;
        Assert.True(File.Exists(Path.Combine(dir, "slapd.conf")));
        Assert.True(Directory.Exists($"/proc/{pid}"));

        await slapd.DisposeAsync();

        Assert.False(Directory.Exists($"/proc/{pid}"), $"slapd {pid} still runs");
        Assert.False(Directory.Exists(dir), $"{dir} is still there");
    }
}
