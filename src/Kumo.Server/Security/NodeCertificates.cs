using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Dapper;
using Grpc.Core;
using Kumo.Core;
using Kumo.Core.Security;
using Kumo.Server.Storage;

namespace Kumo.Server.Security;

/// <summary>
/// Node identity: issues client certificates (for a join token, or directly to the all-in-one agent), records their
/// serials, revokes them when a node is removed, and tells on every agent call which node is calling.
/// </summary>
public sealed class NodeCertificates(Database db, ServerPki pki, JoinTokens tokens, TimeProvider time)
{
    /// <summary>Signs the CSR of a joining node after spending its token; the certificate's CN is the node name.</summary>
    public async Task<X509Certificate2> JoinAsync(string token, string nodeName, string csrPem, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(token))
            throw Refused(StatusCode.Unauthenticated, "a join token is required (kumo node add-token)");
        if (Names.Validate(nodeName, "node name") is { } nameError)
            throw Refused(StatusCode.InvalidArgument, nameError);
        var key = PublicKeyOf(csrPem);
        var certificate = pki.Authority.IssueNode(nodeName, key, time);
        await db.WriteAsync(ctx =>
        {
            // The name check comes first, so a refused join leaves the token usable.
            if (ActiveSerials(ctx, nodeName).Count > 0)
                throw Refused(StatusCode.AlreadyExists,
                    $"node {nodeName} has already joined; to replace it, remove it first: kumo node remove {nodeName}");
            if (tokens.Spend(ctx, token, nodeName) is { } why)
                throw Refused(StatusCode.PermissionDenied, why);
            Record(ctx, nodeName, certificate);
        }, ct);
        return certificate;
    }

    /// <summary>
    /// A certificate for the agent inside kumod --all-in-one, with a fresh key: no token, kumod vouches for itself.
    /// Earlier certificates of that node are revoked.
    /// </summary>
    public async Task<X509Certificate2> IssueLocalAsync(string nodeName, CancellationToken ct)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var issued = pki.Authority.IssueNode(nodeName, new PublicKey(key), time);
        var certificate = issued.CopyWithPrivateKey(key);
        await db.WriteAsync(ctx =>
        {
            RevokeAll(ctx, nodeName, time);
            Record(ctx, nodeName, certificate);
        }, ct);
        return certificate;
    }

    /// <summary>True when <paramref name="certificate"/> names <paramref name="nodeName"/>, chains to kumod's CA and is not revoked.</summary>
    public async Task<bool> IsValidAsync(X509Certificate2 certificate, string nodeName, CancellationToken ct)
    {
        try
        {
            return await IdentifyAsync(certificate, ct) == nodeName;
        }
        catch (RpcException)
        {
            return false;
        }
    }

    /// <summary>The node name of the calling agent, from its client certificate; throws an RpcException to refuse the call.</summary>
    public Task<string> AuthenticateAsync(ServerCallContext context) =>
        IdentifyAsync(context.GetHttpContext().Connection.ClientCertificate, context.CancellationToken);

    /// <summary>
    /// Checks that the caller may act for the node with id <paramref name="nodeId"/>. Returns false when no such node
    /// exists (removed: the agent must register again); throws when the node belongs to another certificate.
    /// </summary>
    public async Task<bool> AuthorizeNodeAsync(ServerCallContext context, string nodeId)
    {
        var caller = await AuthenticateAsync(context);
        var name = await db.ReadAsync(c => c.QuerySingleOrDefault<string>("SELECT name FROM nodes WHERE id = @nodeId", new { nodeId }),
            context.CancellationToken);
        if (name is null)
            return false;
        if (name != caller)
            throw Refused(StatusCode.PermissionDenied, $"the certificate of node {caller} cannot act for node {name}");
        return true;
    }

    /// <summary>Revokes every certificate of a node (node removal); returns how many were still valid.</summary>
    internal static int RevokeAll(WriteContext ctx, string nodeName, TimeProvider time) =>
        ctx.Connection.Execute("UPDATE node_certificates SET revoked_at = @now WHERE node_name = @nodeName AND revoked_at IS NULL",
            new { now = Json.Now(time), nodeName }, ctx.Transaction);

    private async Task<string> IdentifyAsync(X509Certificate2? certificate, CancellationToken ct)
    {
        if (certificate is null)
            throw Refused(StatusCode.Unauthenticated, "this call needs the node's client certificate; a new node joins first (kumo node add-token)");
        // Kestrel already refused certificates from other CAs during the handshake; checked again so no path skips it.
        if (!CaTrust.ChainsTo(certificate, pki.Authority.Certificate, CaTrust.ClientAuth))
            throw Refused(StatusCode.Unauthenticated, "the client certificate is not issued by this kumod's CA, or has expired");
        var serial = certificate.SerialNumber;
        var row = await db.ReadAsync(c => c.QuerySingleOrDefault<(string NodeName, string Fingerprint, string? RevokedAt)>(
            "SELECT node_name, fingerprint, revoked_at FROM node_certificates WHERE serial = @serial", new { serial }), ct);
        if (row == default || row.Fingerprint != CertificateFingerprint.Of(certificate))
            throw Refused(StatusCode.PermissionDenied, "this kumod has no record of issuing the client certificate");
        if (row.RevokedAt is not null)
            throw Refused(StatusCode.PermissionDenied,
                $"the certificate of node {row.NodeName} was revoked at {row.RevokedAt} (node removed); join again with a new token (kumo node add-token)");
        var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (name != row.NodeName)
            throw Refused(StatusCode.PermissionDenied, "the client certificate's name does not match kumod's record");
        return name;
    }

    private void Record(WriteContext ctx, string nodeName, X509Certificate2 certificate) =>
        ctx.Connection.Execute(
            "INSERT INTO node_certificates (serial, node_name, fingerprint, issued_at, expires_at) VALUES (@serial, @nodeName, @fingerprint, @now, @expires)",
            new
            {
                serial = certificate.SerialNumber,
                nodeName,
                fingerprint = CertificateFingerprint.Of(certificate),
                now = Json.Now(time),
                expires = Json.At(new DateTimeOffset(certificate.NotAfter.ToUniversalTime())),
            }, ctx.Transaction);

    private static List<string> ActiveSerials(WriteContext ctx, string nodeName) =>
        ctx.Connection.Query<string>("SELECT serial FROM node_certificates WHERE node_name = @nodeName AND revoked_at IS NULL",
            new { nodeName }, ctx.Transaction).ToList();

    private static PublicKey PublicKeyOf(string csrPem)
    {
        CertificateRequest request;
        try
        {
            // Loading checks the CSR's signature: the node proves it holds the key.
            request = CertificateRequest.LoadSigningRequestPem(csrPem, HashAlgorithmName.SHA256,
                CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw Refused(StatusCode.InvalidArgument, $"the certificate signing request is not a PEM PKCS#10 request signed by its own key: {e.Message}");
        }
        var key = request.PublicKey;
        using var ec = key.GetECDsaPublicKey();
        using var rsa = key.GetRSAPublicKey();
        if (ec is null && (rsa is null || rsa.KeySize < 2048))
            throw Refused(StatusCode.InvalidArgument, "the node key must be ECDSA or RSA of at least 2048 bits");
        return key;
    }

    private static RpcException Refused(StatusCode code, string message) => new(new Status(code, message));
}
