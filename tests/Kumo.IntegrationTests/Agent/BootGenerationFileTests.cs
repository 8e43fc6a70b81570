using Kumo.Agent.Qemu;

namespace Kumo.IntegrationTests.Agent;

public sealed class BootGenerationFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kumo-bootgen-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string FilePath => BootGenerationFile.In(_dir);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WithNoFile_NothingBooted(bool alive) => Assert.Equal(0, BootGenerationFile.Read(FilePath, alive));

    [Fact]
    public async Task APendingLaunch_CountsOnlyIfTheProcessIsAlive()
    {
        await BootGenerationFile.MarkBootedAsync(FilePath, 3, CancellationToken.None);
        await BootGenerationFile.MarkPendingAsync(FilePath, 4, CancellationToken.None);

        Assert.Equal(4, BootGenerationFile.Read(FilePath, alive: true));
        Assert.Equal(3, BootGenerationFile.Read(FilePath, alive: false));
    }

    [Fact]
    public async Task ABootedLaunch_CountsWhetherOrNotTheProcessIsStillAlive()
    {
        await BootGenerationFile.MarkPendingAsync(FilePath, 4, CancellationToken.None);
        await BootGenerationFile.MarkBootedAsync(FilePath, 4, CancellationToken.None);

        Assert.Equal(4, BootGenerationFile.Read(FilePath, alive: true));
        Assert.Equal(4, BootGenerationFile.Read(FilePath, alive: false));
        Assert.Equal("4", File.ReadAllText(FilePath));
    }

    [Fact]
    public async Task AFailedLaunch_LeavesTheGenerationBefore()
    {
        await BootGenerationFile.MarkPendingAsync(FilePath, 7, CancellationToken.None);
        await BootGenerationFile.MarkFailedAsync(FilePath, 7);

        Assert.Equal(6, BootGenerationFile.Read(FilePath, alive: false));
        Assert.False(File.Exists(FilePath + ".tmp"), "the atomic write leaves no temporary file");
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("seven")]
    [InlineData("pending 7")]
    public void AnUnreadableFile_CountsAsNothingBooted(string content)
    {
        File.WriteAllText(FilePath, content);
        Assert.Equal(0, BootGenerationFile.Read(FilePath, alive: true));
    }
}
