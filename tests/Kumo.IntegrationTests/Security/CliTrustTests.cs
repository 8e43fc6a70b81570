using System.Text.Json;
using Kumo.Core;
using Kumo.Core.Security;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Security;

/// <summary>The real `kumo` binary meeting an https kumod: trust on first use, pinning, and a server whose CA changed.</summary>
public sealed class CliTrustTests(BareKumod fixture) : IClassFixture<BareKumod>, IDisposable
{
    private readonly string _home = Directory.CreateTempSubdirectory("kumo-it-home-").FullName;

    private KumoEnvironment Env => fixture.Env;

    private string Fingerprint
    {
        get
        {
            using var ca = CaTrust.LoadPem(Env.CaPath);
            return CertificateFingerprint.Of(ca);
        }
    }

    private string PinFile => Path.Combine(_home, ".config", "kumo", "servercerts", $"127.0.0.1_{Env.ApiPort}.crt");

    /// <summary>The CLI in this test's own home (nothing pinned yet), logged in as the admin through KUMO_TOKEN.</summary>
    private Task<CliResult> Kumo(params string[] args) =>
        CliProcess.RunInAsync(_home, Env.Url, new Dictionary<string, string?> { ["KUMO_TOKEN"] = Env.Token }, null, args);

    public void Dispose() => Directory.Delete(_home, recursive: true);

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public async Task FirstContact_WithoutATerminalOrFingerprint_RefusesWithInstructions()
    {
        var r = await Kumo("node", "list");

        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(Lines(r.Err));
        Assert.StartsWith("error: ", line);
        Assert.Contains($"kumo config trust --fingerprint {Fingerprint}", line);
        Assert.Contains("--accept-fingerprint", line);
        Assert.Equal("", r.Out);
        Assert.False(File.Exists(PinFile));
    }

    [Fact]
    public async Task AcceptFingerprint_PinsTheCaPrivately_AndLaterCallsNeedNoFlag()
    {
        var first = await Kumo("--accept-fingerprint", Fingerprint.ToUpperInvariant(), "node", "list");
        var later = await Kumo("node", "list");
        var show = await Kumo("config", "show");

        Assert.True(first.ExitCode == 0, first.Err);
        Assert.Contains("NAME", first.Out);
        Assert.True(later.ExitCode == 0, later.Err);
        Assert.Equal("", later.Err);
        Assert.Contains($"ca  {Fingerprint}", show.Out);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(PinFile));
        Assert.Equal(Fingerprint, CertificateFingerprint.Of(CaTrust.LoadPem(PinFile)));
    }

    [Fact]
    public async Task AcceptFingerprint_ThatDiffers_IsRefusedAndPinsNothing()
    {
        using var other = new TestPki();

        var r = await Kumo("--accept-fingerprint", other.Fingerprint, "node", "list");

        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(Lines(r.Err));
        Assert.Contains(Fingerprint, line);
        Assert.Contains(other.Fingerprint, line);
        Assert.False(File.Exists(PinFile));
    }

    [Fact]
    public async Task ServerWithADifferentCaThanThePinnedOne_IsRefusedInOneLineNamingBothFingerprints()
    {
        using var other = new TestPki("Old CA");
        var oldCa = Path.Combine(_home, "old-ca.pem");
        await File.WriteAllTextAsync(oldCa, other.Ca.ExportCertificatePem());
        var pin = await Kumo("config", "trust", "--ca", oldCa);
        Assert.True(pin.ExitCode == 0, pin.Err);

        var r = await Kumo("node", "list");

        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(Lines(r.Err));
        Assert.Contains("not issued by the pinned CA", line);
        Assert.Contains(other.Fingerprint, line);
        Assert.Contains(Fingerprint, line);
        Assert.Equal("", r.Out);
        Assert.Equal(other.Fingerprint, CertificateFingerprint.Of(CaTrust.LoadPem(PinFile)));
    }

    [Fact]
    public async Task ConfigTrustFingerprint_PinsOnlyWhenItMatches()
    {
        using var other = new TestPki();

        var wrong = await Kumo("config", "trust", "--fingerprint", other.Fingerprint);
        Assert.Equal(1, wrong.ExitCode);
        Assert.False(File.Exists(PinFile));

        var right = await Kumo("config", "trust", "--fingerprint", string.Join(':', Enumerable.Range(0, 32).Select(i => Fingerprint.Substring(i * 2, 2))));
        Assert.True(right.ExitCode == 0, right.Err);
        Assert.Contains($"pinned CA {Fingerprint}", right.Out);
        var images = await Kumo("image", "list");
        Assert.True(images.ExitCode == 0, images.Err);
    }

    [Fact]
    public async Task NodeAddToken_ReturnsATokenTheCaFingerprintAndTheAgentCommand()
    {
        await Kumo("config", "trust", "--ca", Env.CaPath);

        var json = await Kumo("node", "add-token", "--ttl", "10m", "-o", "json");
        var table = await Kumo("node", "add-token");

        Assert.True(json.ExitCode == 0, json.Err);
        var token = JsonSerializer.Deserialize<NodeToken>(json.Out, ApiClient.Json)!;
        Assert.Equal(Fingerprint, token.CaFingerprint);
        Assert.InRange(token.ExpiresAt - DateTimeOffset.UtcNow, TimeSpan.FromMinutes(9), TimeSpan.FromMinutes(10));
        Assert.Contains("kumo-agent --server https://127.0.0.1:7401 --join-token ", table.Out);
        Assert.Contains($"--ca-fingerprint {Fingerprint}", table.Out);
    }
}
