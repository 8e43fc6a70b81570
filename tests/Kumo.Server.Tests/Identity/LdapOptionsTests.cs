using Kumo.Server.Identity.Ldap;

namespace Kumo.Server.Tests.Identity;

public sealed class LdapOptionsTests
{
    private static readonly LdapOptions Valid = new()
    {
        Url = "ldap://127.0.0.1:3890",
        BaseDn = "ou=people,dc=kumo,dc=test",
        BindDn = "cn=kumo,dc=kumo,dc=test",
        BindPassword = "service-Secret-1",
    };

    [Fact]
    public void ToString_HidesTheServicePassword()
    {
        var text = Valid.ToString();

        Assert.DoesNotContain("service-Secret-1", text, StringComparison.Ordinal);
        Assert.Contains("BindPassword = ***", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_AcceptsACompleteConfiguration() => Valid.Validate();

    [Theory]
    [InlineData("url-scheme")]
    [InlineData("url-path")]
    [InlineData("base-dn")]
    [InlineData("user-attribute")]
    [InlineData("disabled-attribute")]
    [InlineData("password-without-dn")]
    [InlineData("timeout")]
    public void Validate_RefusesABrokenConfiguration(string broken)
    {
        var options = broken switch
        {
            "url-scheme" => Valid with { Url = "http://127.0.0.1:3890" },
            "url-path" => Valid with { Url = "ldap://127.0.0.1:3890/dc=kumo??sub?(uid=*)" },
            "base-dn" => Valid with { BaseDn = " " },
            "user-attribute" => Valid with { UserAttribute = "uid=*)(cn" },
            "disabled-attribute" => Valid with { DisabledAttribute = "employeeType)(x" },
            "password-without-dn" => Valid with { BindDn = null },
            "timeout" => Valid with { Timeout = TimeSpan.Zero },
            _ => throw new ArgumentOutOfRangeException(nameof(broken)),
        };

        Assert.Throws<ArgumentException>(options.Validate);
    }
}
