using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Cli.Tests.Configuration;

/// <summary>First contact with an https kumod, as a person at a terminal and as a script sees it.</summary>
public sealed class TrustOnFirstUseTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly TestCertificates _pki = new();

    private string Config => _dir.File("kumo", "config");

    private string[] PinnedFiles => Directory.Exists(_dir.File("kumo", "servercerts")) ? Directory.GetFiles(_dir.File("kumo", "servercerts")) : [];

    public void Dispose()
    {
        _pki.Dispose();
        _dir.Dispose();
    }

    private Task<FakeKumod> StartAsync() => FakeKumod.StartAsync(app =>
    {
        app.MapGet("/api/v1/ca", () => Results.Text(_pki.CaPem, "application/x-pem-file"));
        app.MapGet("/api/v1/nodes", () => FakeKumod.Ok(Array.Empty<Node>()));
    }, _pki.Server());

    private Task<CliResult> RunAsync(FakeKumod kumod, string? terminalInput, params string[] args) =>
        CliRunner.RunAsync(["--url", kumod.Url.ToString(), .. args], configPath: Config, terminalInput: terminalInput);

    [Fact]
    public async Task AtATerminal_ShowsTheFingerprint_AndPinsTheCaWhenAccepted()
    {
        await using var kumod = await StartAsync();

        var first = await RunAsync(kumod, "yes\n", "node", "list");
        var second = await RunAsync(kumod, null, "node", "list");

        Assert.True(first.ExitCode == 0, first.Err);
        Assert.Contains(_pki.Fingerprint, first.Err);
        Assert.Contains("Trust this CA for this server? [y/N]", first.Err);
        Assert.Single(PinnedFiles);
        Assert.Equal(0, second.ExitCode);
        Assert.Equal("", second.Err);
    }

    [Fact]
    public async Task AtATerminal_Declining_Exits1_PinsNothing_AndSendsNothingButTheCaRequest()
    {
        await using var kumod = await StartAsync();

        var r = await RunAsync(kumod, "n\n", "node", "list");

        Assert.Equal(1, r.ExitCode);
        Assert.EndsWith($"error: kumod at {kumod.Url.GetLeftPart(UriPartial.Authority)} is not trusted (CA fingerprint {_pki.Fingerprint} declined)", r.ErrLines[^1]);
        Assert.Empty(PinnedFiles);
        Assert.Equal(["GET /api/v1/ca"], kumod.Requests);
    }

    [Fact]
    public async Task WithoutATerminal_RefusesInOneLineWithTheCommandsToTrust()
    {
        await using var kumod = await StartAsync();

        var r = await RunAsync(kumod, null, "node", "list");

        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains($"kumo config trust --fingerprint {_pki.Fingerprint}", line);
        Assert.Contains($"--accept-fingerprint {_pki.Fingerprint}", line);
        Assert.Empty(PinnedFiles);
    }

    [Fact]
    public async Task ConfigTrustCa_PinsAFileWithoutAsking_AndConfigShowReportsIt()
    {
        await using var kumod = await StartAsync();
        var caFile = _dir.File("ca.pem");
        await File.WriteAllTextAsync(caFile, _pki.CaPem);

        var trust = await RunAsync(kumod, null, "config", "trust", "--ca", caFile);
        var show = await RunAsync(kumod, null, "config", "show", "-o", "json");
        var list = await RunAsync(kumod, null, "node", "list");

        Assert.True(trust.ExitCode == 0, trust.Err);
        Assert.Contains($"\"ca\": \"{_pki.Fingerprint}\"", show.Out);
        Assert.Equal(0, list.ExitCode);
        var pinned = Assert.Single(PinnedFiles);
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(pinned));
    }

    [Fact]
    public async Task ConfigTrust_OnAPlainHttpUrl_IsAUsageError()
    {
        var r = await CliRunner.RunAsync(["--url", "http://127.0.0.1:1", "config", "trust", "--fingerprint", _pki.Fingerprint], configPath: Config);

        Assert.Equal(1, r.ExitCode);
        Assert.Contains("plain http", Assert.Single(r.ErrLines));
    }

    [Fact]
    public async Task AcceptFingerprint_ThatIsNotAFingerprint_IsAUsageError()
    {
        await using var kumod = await StartAsync();

        var r = await RunAsync(kumod, null, "--accept-fingerprint", "abc", "node", "list");

        Assert.Equal(1, r.ExitCode);
        Assert.Contains("is not a SHA-256 fingerprint", Assert.Single(r.ErrLines));
    }
}
