using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.Client.Trust;

/// <summary>Fetching kumod's CA before anything is trusted, for a person or a script to check by its fingerprint.</summary>
public static class ServerTrust
{
    /// <summary>
    /// Reads GET /api/v1/ca without verifying the server, then checks that the server's own certificate was issued by
    /// that CA. Nothing about the answer is trusted until its fingerprint is compared out of band.
    /// </summary>
    public static async Task<X509Certificate2> FetchCaAsync(Uri baseAddress, CancellationToken cancellationToken = default)
    {
        X509Certificate2? presented = null;
        var intermediates = new X509Certificate2Collection();
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
#pragma warning disable CA5359 // Deliberate: this only fetches the CA, which the caller compares by fingerprint before trusting it.
                RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
#pragma warning restore CA5359
                {
                    if (certificate is not null)
                        presented ??= X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
                    if (chain is not null)
                    {
                        foreach (var element in chain.ChainElements)
                            intermediates.Add(X509CertificateLoader.LoadCertificate(element.Certificate.RawData));
                    }
                    return true;
                },
            },
        };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
        var url = new Uri(baseAddress.AbsoluteUri.TrimEnd('/') + "/api/v1/ca");
        string pem;
        try
        {
            using var response = await http.GetAsync(url, cancellationToken);
            if (!response.IsSuccessStatusCode)
                throw KumoApiException.Failed($"kumod at {baseAddress} did not hand out its CA (GET /api/v1/ca answered {(int)response.StatusCode})");
            pem = await response.Content.ReadAsStringAsync(cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw KumoApiException.Unreachable(baseAddress, e);
        }
        catch (TaskCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw KumoApiException.Failed($"kumod at {baseAddress} did not answer GET /api/v1/ca within 30s", e);
        }
        X509Certificate2 ca;
        try
        {
            ca = X509Certificate2.CreateFromPem(pem);
        }
        catch (CryptographicException e)
        {
            throw KumoApiException.Failed($"kumod at {baseAddress} sent no usable CA certificate: {e.Message}", e);
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        if (presented is null || !CaTrust.ChainsTo(presented, ca, CaTrust.ServerAuth, chain))
        {
            ca.Dispose();
            throw KumoApiException.Failed($"kumod at {baseAddress} hands out a CA that did not issue its own certificate: refusing to trust either");
        }
        presented.Dispose();
        return ca;
    }
}
