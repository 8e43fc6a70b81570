using Kumo.Server.Audit;

namespace Kumo.Server.Tests.Audit;

public sealed class AuditTargetTests
{
    [Theory]
    [InlineData("?state=running", "?state=running")]
    [InlineData("?token=abc", "?token=REDACTED")]
    [InlineData("?a=1&password=x&b=2", "?a=1&password=REDACTED&b=2")]
    [InlineData("?API_KEY=x", "?API_KEY=REDACTED")]
    [InlineData("?access_token=x&refresh_token=y", "?access_token=REDACTED&refresh_token=REDACTED")]
    [InlineData("?client_secret=x", "?client_secret=REDACTED")]
    [InlineData("?tok%65n=x", "?tok%65n=REDACTED")]
    [InlineData("?pass+word=x", "?pass+word=REDACTED")]
    [InlineData("?x=1;token=abc", "?x=1;token=REDACTED")]
    [InlineData("?token", "?token=REDACTED")]
    [InlineData("?token=a=b", "?token=REDACTED")]
    [InlineData("?=x&&y=1", "?=x&&y=1")]
    public void Redact_HidesValuesOfSecretLookingNames(string query, string expected)
    {
        Assert.Equal(expected, AuditTarget.Redact(query));
    }
}
