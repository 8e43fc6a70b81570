namespace Kumo.Core.Tests;

public sealed class RegistryReferencesTests
{
    [Theory]
    [InlineData("127.0.0.1:5000/app")]
    [InlineData("127.0.0.1:5000/team/app:v1")]
    [InlineData("registry.example.org/team/my_app-2:1.0.3")]
    [InlineData("localhost:5000/app:latest")]
    [InlineData("quay.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    public void Validate_FullyQualifiedReference_IsAccepted(string image)
    {
        Assert.True(RegistryReferences.IsReference(image));
        Assert.Null(RegistryReferences.Validate(image));
    }

    [Theory]
    [InlineData("localhost/kumo-01abc:latest", "node's own image store")]
    [InlineData("team/app:1", "has no registry host")]
    [InlineData("127.0.0.1:5000/Team/App", "not a valid reference")]
    [InlineData("127.0.0.1:99999/app", "not a registry host")]
    [InlineData("bad_host.org/app", "not a registry host")]
    [InlineData("127.0.0.1:5000/app:", "not a valid reference")]
    [InlineData("127.0.0.1:5000/../app", "not a valid reference")]
    [InlineData("127.0.0.1:5000/app:-x", "not a valid reference")]
    public void Validate_BadReference_SaysWhatIsWrong(string image, string expected) =>
        Assert.Contains(expected, RegistryReferences.Validate(image), StringComparison.Ordinal);

    [Fact]
    public void IsReference_KumoImageName_IsNot() => Assert.False(RegistryReferences.IsReference("busybox"));

    [Theory]
    [InlineData("127.0.0.1:5000", true)]
    [InlineData("registry.example.org", true)]
    [InlineData("registry.example.org:443", true)]
    [InlineData("http://registry.example.org", false)]
    [InlineData("host:0", false)]
    [InlineData("", false)]
    public void ValidRegistry_TakesHostAndOptionalPort(string registry, bool valid) =>
        Assert.Equal(valid, RegistryReferences.ValidRegistry(registry));
}
