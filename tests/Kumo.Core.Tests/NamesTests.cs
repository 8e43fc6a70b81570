namespace Kumo.Core.Tests;

public sealed class NamesTests
{
    [Theory]
    [InlineData("a")]
    [InlineData("0")]
    [InlineData("web")]
    [InlineData("web-1")]
    [InlineData("1-web")]
    [InlineData("a-b-c")]
    public void Validate_WithRfc1123Label_ReturnsNull(string name)
    {
        Assert.Null(Names.Validate(name));
        Assert.True(Names.IsValid(name));
    }

    [Fact]
    public void Validate_With63Characters_ReturnsNull()
    {
        Assert.Null(Names.Validate(new string('a', 63)));
    }

    [Fact]
    public void Validate_With64Characters_NamesTheLimit()
    {
        var error = Names.Validate(new string('a', 64));

        Assert.NotNull(error);
        Assert.Contains("64 characters", error);
        Assert.Contains("63", error);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void Validate_WhenEmpty_SaysItMustNotBeEmpty(string? name)
    {
        Assert.Equal("name must not be empty", Names.Validate(name));
    }

    [Theory]
    [InlineData("../x")]
    [InlineData("a/b")]
    [InlineData("a.b")]
    [InlineData("Web")]
    [InlineData("WEB")]
    [InlineData("-web")]
    [InlineData("web-")]
    [InlineData("-")]
    [InlineData("web_1")]
    [InlineData("web 1")]
    [InlineData(" web")]
    [InlineData("web\n")]
    [InlineData("web\0")]
    [InlineData("\0")]
    public void Validate_WithCharactersOutsideTheLabelAlphabet_IsRejected(string name)
    {
        var error = Names.Validate(name);

        Assert.NotNull(error);
        Assert.False(Names.IsValid(name));
    }

    [Theory]
    [InlineData("w\u0435b", 0x0435)] // Cyrillic 'е'
    [InlineData("\u0430pp", 0x0430)] // Cyrillic 'а'
    [InlineData("web\u200B", 0x200B)] // zero-width space
    [InlineData("w\u0131n", 0x0131)] // dotless i
    [InlineData("ｗｅｂ", 0xFF57)] // full-width
    public void Validate_WithUnicodeLookAlike_NamesTheCodePoint(string name, int codePoint)
    {
        var error = Names.Validate(name);

        Assert.NotNull(error);
        Assert.Contains("non-ASCII", error);
        Assert.Contains($"U+{codePoint:X4}", error);
    }

    [Fact]
    public void Validate_WithControlCharacter_DoesNotEchoIt()
    {
        var error = Names.Validate("w\u0435b\0");

        Assert.NotNull(error);
        Assert.DoesNotContain('\0', error);
        Assert.DoesNotContain('\u0435', error);
    }

    [Fact]
    public void Validate_UsesTheGivenFieldName()
    {
        Assert.Equal("image must not be empty", Names.Validate("", "image"));
    }
}
