using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.Bench;

/// <summary>HTTPS to a kumod of the bench's own, trusting exactly the CA that kumod made in STATE/pki.</summary>
internal static class KumodTls
{
    public static SocketsHttpHandler Handler(string stateDir, int maxConnections = int.MaxValue)
    {
        X509Certificate2? ca = null;
        return new SocketsHttpHandler
        {
            MaxConnectionsPerServer = maxConnections,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            SslOptions = new SslClientAuthenticationOptions
            {
                // The CA appears when kumod first starts, after this handler exists: load it on first use.
                RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                {
                    ca ??= CaTrust.LoadPem(Path.Combine(stateDir, "pki", "ca.crt"));
                    return CaTrust.ServerRejection(ca, certificate, chain, errors) is null;
                },
            },
        };
    }
}
