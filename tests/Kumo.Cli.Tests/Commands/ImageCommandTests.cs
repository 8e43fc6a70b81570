using Kumo.Cli.Commands;

namespace Kumo.Cli.Tests.Commands;

public sealed class ImageCommandTests
{
    [Theory]
    [InlineData("/tmp/focal.box", "focal")]
    [InlineData("Disk_1.vmdk.gz", "disk-1")]
    [InlineData("./My Appliance.ova", "my-appliance")]
    [InlineData("plain", "plain")]
    public void DefaultName_IsAValidNameFromTheFileName(string path, string expected) =>
        Assert.Equal(expected, ImageCommands.DefaultName(path));
}
