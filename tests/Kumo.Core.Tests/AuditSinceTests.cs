namespace Kumo.Core.Tests;

public sealed class AuditSinceTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 24, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData("90s", "2026-11-24T11:58:30Z")]
    [InlineData("15m", "2026-11-24T11:45:00Z")]
    [InlineData("1h", "2026-11-24T11:00:00Z")]
    [InlineData("1h30m", "2026-11-24T10:30:00Z")]
    [InlineData("2d", "2026-11-22T12:00:00Z")]
    [InlineData("1w", "2026-11-17T12:00:00Z")]
    [InlineData("2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z")]
    [InlineData("2026-11-01T02:00:00+02:00", "2026-11-01T00:00:00Z")]
    [InlineData(" 1h ", "2026-11-24T11:00:00Z")]
    public void TryParse_AcceptsDurationsAndRfc3339Times(string text, string expected)
    {
        Assert.True(AuditSince.TryParse(text, Now, out var since, out var error), error);
        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), since);
    }

    [Theory]
    [InlineData("")]
    [InlineData("yesterday")]
    [InlineData("1")]
    [InlineData("h")]
    [InlineData("-1h")]
    [InlineData("0s")]
    [InlineData("1y")]
    [InlineData("99999999999d")]
    [InlineData("999999999w999999999w")]
    [InlineData("2026-11-01")]
    public void TryParse_RefusesAnythingElseWithAReason(string text)
    {
        Assert.False(AuditSince.TryParse(text, Now, out _, out var error));
        Assert.False(string.IsNullOrEmpty(error));
    }
}
