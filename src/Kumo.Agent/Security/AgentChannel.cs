using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using Kumo.Core.Security;

namespace Kumo.Agent.Security;

/// <summary>gRPC channels to kumod over TLS, trusting only the pinned CA and presenting the node's certificate when it has one.</summary>
public static class AgentChannel
{
    public static GrpcChannel Create(Uri server, X509Certificate2 ca, X509Certificate2? client)
    {
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                    CaTrust.ServerRejection(ca, certificate, chain, errors) is null,
            },
        };
        if (client is not null)
        {
            handler.SslOptions.ClientCertificates = [client];
            // Offer the node certificate whatever CA names kumod lists in its request.
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => client;
        }
        return GrpcChannel.ForAddress(server, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    /// <summary>A channel that accepts any server certificate: only for fetching the CA, which is then checked by fingerprint.</summary>
    public static GrpcChannel Unverified(Uri server) => GrpcChannel.ForAddress(server, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
#pragma warning disable CA5359 // Deliberate: the CA fetched here is trusted only if its fingerprint matches --ca-fingerprint.
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true },
#pragma warning restore CA5359
        },
        DisposeHttpClient = true,
    });
}
