namespace Kumo.Core.Tests;

public sealed class CidrTests
{
    [Theory]
    [InlineData("10.42.0.0/24", "10.42.0.1", "10.42.0.254", 253)]
    [InlineData("192.168.8.0/29", "192.168.8.1", "192.168.8.6", 5)]
    [InlineData("172.16.0.0/16", "172.16.0.1", "172.16.255.254", 65533)]
    public void Parse_GivesGatewayLastHostAndGuestCapacity(string text, string first, string last, long guests)
    {
        var c = Cidr.Parse(text);

        Assert.Equal((text, first, last, guests), (c.ToString(), Cidr.Format(c.First), Cidr.Format(c.Last), c.GuestCapacity));
    }

    [Theory]
    [InlineData("10.42.0.0/24", "10.42.0.0/24", true)]
    [InlineData("10.42.0.0/24", "10.42.0.128/25", true)]
    [InlineData("10.42.0.128/25", "10.42.0.0/16", true)]
    [InlineData("10.42.0.0/24", "10.42.1.0/24", false)]
    [InlineData("10.42.0.0/25", "10.42.0.128/25", false)]
    public void Overlaps_IsSymmetricAndExact(string a, string b, bool overlap)
    {
        Assert.Equal(overlap, Cidr.Parse(a).Overlaps(Cidr.Parse(b)));
        Assert.Equal(overlap, Cidr.Parse(b).Overlaps(Cidr.Parse(a)));
    }

    [Theory]
    [InlineData("10.42.0.1/24")]
    [InlineData("10.42.0.0/24/1")]
    [InlineData("10.42.0.0/+24")]
    [InlineData(" 10.42.0.0/24")]
    [InlineData("0.0.0.0/16")]
    [InlineData("255.255.0.0/16")]
    public void TryParse_RefusesWithAReason(string text)
    {
        Assert.False(Cidr.TryParse(text, out _, out var error));
        Assert.False(string.IsNullOrWhiteSpace(error));
    }
}
