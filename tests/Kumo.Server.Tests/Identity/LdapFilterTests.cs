using Kumo.Server.Identity.Ldap;

namespace Kumo.Server.Tests.Identity;

public sealed class LdapFilterTests
{
    [Theory]
    [InlineData("alice", "alice")]
    [InlineData("*", @"\2a")]
    [InlineData("*)(uid=*", @"\2a\29\28uid=\2a")]
    [InlineData(@"a\b", @"a\5cb")]
    [InlineData("a\0b", @"a\00b")]
    [InlineData("\u0430", @"\d0\b0")]
    public void Escape_ReplacesFilterSyntaxAndNonAsciiWithHexEscapes(string value, string escaped) =>
        Assert.Equal(escaped, LdapFilter.Escape(value));

    [Theory]
    [InlineData("alice")]
    [InlineData("a")]
    [InlineData("first.last_2-x")]
    [InlineData("0123456789012345678901234567890123456789012345678901234567890123")]
    public void IsValidUsername_AcceptsLowerCaseAsciiNamesUpTo64(string name) =>
        Assert.True(LdapFilter.IsValidUsername(name));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("ALICE")]
    [InlineData("alice*")]
    [InlineData("al ice")]
    [InlineData("al\u0456ce")]
    [InlineData("01234567890123456789012345678901234567890123456789012345678901234")]
    public void IsValidUsername_RefusesEverythingElse(string? name) =>
        Assert.False(LdapFilter.IsValidUsername(name));
}
