namespace Kumo.Core.Tests;

public sealed class BuildFilesTests
{
    private static string? Mine(string name) => name == "myapp" ? "localhost/kumo-01x:latest" : null;

    [Fact]
    public void RewriteImages_OwnImage_BecomesItsReference_StagesAndOtherLinesStay()
    {
        var text = "FROM myapp AS build\nRUN echo FROM myapp\nFROM --platform=linux/amd64 build\nCOPY --from=myapp /a /a\nCOPY --from=build /b /b\nCOPY --from=0 /c /c\n";
        var rewritten = BuildFiles.RewriteImages(text, Mine);
        Assert.Equal("FROM localhost/kumo-01x:latest AS build\nRUN echo FROM myapp\nFROM --platform=linux/amd64 build\nCOPY --from=localhost/kumo-01x:latest /a /a\nCOPY --from=build /b /b\nCOPY --from=0 /c /c\n", rewritten);
    }

    [Fact]
    public void RewriteImages_EveryImageIsAskedAbout_CaseOfTheKeywordNotWithstanding()
    {
        var asked = new List<string>();
        BuildFiles.RewriteImages("from busybox\nFrom debian:latest as d\nFROM d\n", n => { asked.Add(n); return null; });
        Assert.Equal(["busybox", "debian:latest"], asked);
    }

    [Theory]
    [InlineData("ARG BASE=busybox\nFROM $BASE\n", "given by a variable")]
    [InlineData("FROM busybox\nRUN --mount=type=bind,from=other,target=/x true\n", "RUN --mount")]
    public void RewriteImages_WhatCannotBeChecked_IsRefused(string text, string expected) =>
        Assert.Contains(expected, Assert.Throws<InvalidDataException>(() => BuildFiles.RewriteImages(text, Mine)).Message, StringComparison.Ordinal);
}
