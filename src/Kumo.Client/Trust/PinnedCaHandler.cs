using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.Client.Trust;

/// <summary>
/// HTTPS to kumod trusting one pinned CA and nothing else (not the system store). The name dialled must be in the
/// server certificate. When the server is refused, the error names the pinned CA and the one the server offers now.
/// </summary>
public sealed class PinnedCaHandler : DelegatingHandler
{
    private readonly X509Certificate2 _ca;
    private volatile string? _rejection;

    public PinnedCaHandler(X509Certificate2 ca)
    {
        _ca = ca;
        InnerHandler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                {
                    _rejection = CaTrust.ServerRejection(_ca, certificate, chain, errors);
                    return _rejection is null;
                },
            },
        };
    }

    public string PinnedFingerprint => CertificateFingerprint.Of(_ca);

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        try
        {
            return await base.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.SecureConnectionError && _rejection is { } why)
        {
            var server = new Uri(request.RequestUri!.GetLeftPart(UriPartial.Authority));
            string offered;
            try
            {
                using var current = await ServerTrust.FetchCaAsync(server, cancellationToken);
                offered = CertificateFingerprint.Of(current);
            }
            catch (KumoApiException)
            {
                offered = "unknown";
            }
            var advice = offered == "unknown" || why.Contains("does not name", StringComparison.Ordinal)
                ? ""
                : $"; if kumod's CA was replaced on purpose, trust the new one: kumo config trust --fingerprint {offered}";
            throw KumoApiException.Failed(
                $"kumod at {server} is not trusted: {why} (pinned CA SHA-256 {PinnedFingerprint}, kumod offers CA {offered}){advice}", e);
        }
    }
}
