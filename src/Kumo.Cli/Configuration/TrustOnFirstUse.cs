using System.Security.Cryptography.X509Certificates;
using Kumo.Client.Trust;
using Kumo.Core.Security;

namespace Kumo.Cli.Configuration;

/// <summary>
/// HTTPS to one kumod, trusting the CA pinned for it. On first contact the CA is fetched and its fingerprint shown:
/// a person at a terminal is asked, a script must name the fingerprint it expects (--accept-fingerprint) or pin the
/// CA beforehand (kumo config trust). Nothing is sent to the server before its CA is settled.
/// </summary>
internal sealed class TrustOnFirstUse(Uri server, CliEnvironment env, string? acceptFingerprint) : HttpMessageHandler
{
    private readonly SemaphoreSlim _settle = new(1, 1);
    private HttpMessageInvoker? _pinned;

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var pinned = _pinned ?? await SettleAsync(cancellationToken);
        return await pinned.SendAsync(request, cancellationToken);
    }

    private async Task<HttpMessageInvoker> SettleAsync(CancellationToken cancellationToken)
    {
        await _settle.WaitAsync(cancellationToken);
        try
        {
            if (_pinned is null)
            {
                var ca = TrustStore.Load(env, server) ?? await TrustAsync(server, env, acceptFingerprint, cancellationToken);
                _pinned = new HttpMessageInvoker(new PinnedCaHandler(ca), disposeHandler: true);
            }
            return _pinned;
        }
        finally
        {
            _settle.Release();
        }
    }

    /// <summary>Fetches the server's CA and pins it once its fingerprint is accepted; throws (one line) when it is not.</summary>
    public static async Task<X509Certificate2> TrustAsync(Uri server, CliEnvironment env, string? acceptFingerprint, CancellationToken cancellationToken)
    {
        string? expected = null;
        if (acceptFingerprint is not null && (expected = CertificateFingerprint.Normalize(acceptFingerprint)) is null)
            throw new UsageException($"'{acceptFingerprint}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)");
        var ca = await ServerTrust.FetchCaAsync(server, cancellationToken);
        var fingerprint = CertificateFingerprint.Of(ca);
        if (expected is not null)
        {
            if (expected != fingerprint)
                throw new UsageException($"kumod at {Show(server)} has CA fingerprint {fingerprint}, not {expected}: not trusted");
        }
        else if (env.IsInputTerminal)
        {
            await env.Error.WriteLineAsync($"kumod at {Show(server)} is not known yet. Its certificate authority has the SHA-256 fingerprint");
            await env.Error.WriteLineAsync($"  {fingerprint}");
            await env.Error.WriteLineAsync("Compare it with the fingerprint kumod logs at start (`kumo node add-token` prints it too).");
            await env.Error.WriteAsync("Trust this CA for this server? [y/N] ");
            var answer = (await env.In.ReadLineAsync(cancellationToken))?.Trim().ToLowerInvariant();
            if (answer is not ("y" or "yes"))
                throw new UsageException($"kumod at {Show(server)} is not trusted (CA fingerprint {fingerprint} declined)");
        }
        else
        {
            throw new UsageException(
                $"kumod at {Show(server)} is not trusted yet; its CA fingerprint is {fingerprint}. Check it with kumod's administrator, then run: kumo config trust --fingerprint {fingerprint} (or pass --accept-fingerprint {fingerprint}; kumo config trust --ca FILE pins a CA file)");
        }
        var path = TrustStore.Save(env, server, ca);
        await env.Error.WriteLineAsync($"trusting CA {fingerprint} for {Show(server)} (pinned in {path})");
        return ca;
    }

    public static string Show(Uri server) => server.GetLeftPart(UriPartial.Authority);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _pinned?.Dispose();
            _settle.Dispose();
        }
        base.Dispose(disposing);
    }
}
