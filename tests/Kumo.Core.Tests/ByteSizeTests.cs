namespace Kumo.Core.Tests;

public sealed class ByteSizeTests
{
    [Theory]
    [InlineData("256M", 256 * ByteSize.MiB)]
    [InlineData("256m", 256 * ByteSize.MiB)]
    [InlineData("256MiB", 256 * ByteSize.MiB)]
    [InlineData("256MB", 256 * ByteSize.MiB)]
    [InlineData("8G", 8 * ByteSize.GiB)]
    [InlineData("1T", ByteSize.TiB)]
    [InlineData("4K", 4 * ByteSize.KiB)]
    [InlineData("1024", 1024L)]
    [InlineData("1", 1L)]
    [InlineData("512B", 512L)]
    [InlineData("64T", ByteSize.Max)]
    public void TryParse_WithValidSize_ReturnsBinaryBytes(string text, long expected)
    {
        Assert.True(ByteSize.TryParse(text, out var bytes, out var error));
        Assert.Null(error);
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData(" 8G", 8 * ByteSize.GiB)]
    [InlineData("8G ", 8 * ByteSize.GiB)]
    [InlineData("\t256M\n", 256 * ByteSize.MiB)]
    public void TryParse_WithSurroundingWhitespace_IgnoresIt(string text, long expected)
    {
        Assert.True(ByteSize.TryParse(text, out var bytes, out _));
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\t\n")]
    public void TryParse_WhenEmptyOrWhitespace_SaysItMustNotBeEmpty(string? text)
    {
        Assert.False(ByteSize.TryParse(text, out var bytes, out var error));
        Assert.Equal(0, bytes);
        Assert.Equal("size must not be empty", error);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("0M")]
    [InlineData("-1")]
    [InlineData("-1G")]
    public void TryParse_WithZeroOrNegative_SaysItMustBeGreaterThanZero(string text)
    {
        Assert.False(ByteSize.TryParse(text, out var bytes, out var error));
        Assert.Equal(0, bytes);
        Assert.Contains("greater than zero", error);
    }

    [Theory]
    [InlineData("65T")]
    [InlineData("9999T")]
    [InlineData("70368744177665")] // 64 TiB + 1 byte
    [InlineData("9223372036854775807T")]
    public void TryParse_BeyondMax_SaysItIsTooLarge(string text)
    {
        Assert.False(ByteSize.TryParse(text, out var bytes, out var error));
        Assert.Equal(0, bytes);
        Assert.Contains("larger than the maximum of 64T", error);
    }

    [Theory]
    [InlineData("8Q")]
    [InlineData("8X")]
    [InlineData("8GG")]
    [InlineData("8 G")]
    [InlineData("1.5G")]
    [InlineData("abc")]
    [InlineData("0x10")]
    [InlineData("8\u041C")] // Cyrillic 'М'
    public void TryParse_WithUnknownUnit_NamesTheUnit(string text)
    {
        Assert.False(ByteSize.TryParse(text, out var bytes, out var error));
        Assert.Equal(0, bytes);
        Assert.Contains("unknown unit", error);
    }

    [Theory]
    [InlineData("M")]
    [InlineData("--1")]
    [InlineData("1-1")]
    [InlineData("99999999999999999999")]
    public void TryParse_WithoutAUsableNumber_IsRejected(string text)
    {
        Assert.False(ByteSize.TryParse(text, out var bytes, out var error));
        Assert.Equal(0, bytes);
        Assert.NotNull(error);
    }

    [Fact]
    public void Parse_WithGarbage_ThrowsFormatExceptionWithTheReason()
    {
        var e = Assert.Throws<FormatException>(() => ByteSize.Parse("8Q"));
        Assert.Contains("unknown unit", e.Message);
    }

    [Theory]
    [InlineData(256 * ByteSize.MiB, "256M")]
    [InlineData(8 * ByteSize.GiB, "8G")]
    [InlineData(ByteSize.TiB, "1T")]
    [InlineData(1536 * ByteSize.MiB, "1536M")]
    [InlineData(4 * ByteSize.KiB, "4K")]
    [InlineData(1000L, "1000")]
    public void Format_PicksTheLargestExactUnit_AndRoundTrips(long bytes, string expected)
    {
        Assert.Equal(expected, ByteSize.Format(bytes));
        Assert.Equal(bytes, ByteSize.Parse(expected));
    }
}
