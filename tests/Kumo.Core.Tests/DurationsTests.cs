namespace Kumo.Core.Tests;

public sealed class DurationsTests
{
    [Theory]
    [InlineData("90s", 90)]
    [InlineData("15m", 15 * 60)]
    [InlineData("1h", 3600)]
    [InlineData(" 2H ", 7200)]
    [InlineData("7d", 7 * 86400)]
    public void TryParse_AcceptsANumberAndAUnit(string text, int seconds)
    {
        Assert.True(Durations.TryParse(text, out var d, out var error), error);
        Assert.Equal(TimeSpan.FromSeconds(seconds), d);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("h")]
    [InlineData("1")]
    [InlineData("0h")]
    [InlineData("-1h")]
    [InlineData("1.5h")]
    [InlineData("1w")]
    [InlineData("99999999999d")]
    public void TryParse_RefusesAnythingElse(string? text)
    {
        Assert.False(Durations.TryParse(text, out _, out var error));
        Assert.Contains("s, m, h or d", error);
    }
}
