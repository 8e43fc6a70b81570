using Kumo.Core.Security;

namespace Kumo.Core.Tests.Security;

public sealed class CertificateFingerprintTests
{
    private const string Canonical = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    [Theory]
    [InlineData(Canonical)]
    [InlineData("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08")]
    [InlineData("9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08")]
    [InlineData("sha256:" + Canonical)]
    [InlineData("sha256 Fingerprint=9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08")]
    [InlineData("  " + Canonical + "\n")]
    public void Normalize_AcceptsTheFormsPeopleCopy(string text) =>
        Assert.Equal(Canonical, CertificateFingerprint.Normalize(text));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData(Canonical + "00")]
    [InlineData("zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    public void Normalize_RefusesWhatIsNotASha256(string? text) =>
        Assert.Null(CertificateFingerprint.Normalize(text));
}
