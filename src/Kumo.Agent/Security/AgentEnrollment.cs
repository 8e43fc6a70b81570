using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Kumo.Core.Security;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Security;

/// <summary>How a new agent joins: a one-time token, and kumod's CA given as a file or as a fingerprint to check it by.</summary>
public sealed record AgentJoinOptions
{
    public string? Token { get; init; }
    public string? CaFile { get; init; }

    /// <summary>Normalized SHA-256 fingerprint (see <see cref="CertificateFingerprint.Normalize"/>).</summary>
    public string? CaFingerprint { get; init; }
}

/// <summary>
/// Makes sure the agent has a client certificate before it starts: keeps the one in STATE/pki, or joins with a token.
/// Joining verifies kumod against the pinned CA before the token leaves the machine, sends a CSR for a key made
/// here (the key never leaves), and saves what kumod signs.
/// </summary>
public sealed partial class AgentEnrollment(AgentOptions options, ILogger<AgentEnrollment> logger)
{
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    /// <summary>True when the agent can run; false (after logging why) when it cannot without a person's help.</summary>
    public async Task<bool> EnsureAsync(CancellationToken ct)
    {
        var credentials = new AgentCredentials(options.StateDir);
        var join = options.Join;
        if (credentials.HasCertificate && (join?.Token is null || credentials.JoinedWith(join.Token)))
        {
            using var existing = credentials.LoadClientCertificate();
            var name = existing.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            if (name == options.NodeName)
                return true;
            LogProblem($"the certificate in {credentials.Directory} is for node {name}, not {options.NodeName}: run with --node-name {name}, or join as {options.NodeName} with a new token (kumo node add-token)");
            return false;
        }
        if (join?.Token is null)
        {
            LogProblem($"this agent has no certificate yet ({credentials.CertificatePath}): join once with --join-token TOKEN (from kumo node add-token) and --ca-fingerprint SHA256 or --ca FILE");
            return false;
        }

        var backoff = TimeSpan.FromMilliseconds(200);
        while (true)
        {
            try
            {
                var ca = await ResolveCaAsync(join, credentials, ct);
                await JoinAsync(ca, join.Token, credentials, ct);
                LogJoined(options.NodeName, options.ServerUrl, credentials.CertificatePath);
                return true;
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded && !ct.IsCancellationRequested)
            {
                LogWaiting(options.ServerUrl, e.Status.Detail);
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                LogProblem($"kumod refused to let node {options.NodeName} join: {e.Status.Detail}");
                return false;
            }
            catch (JoinException e)
            {
                LogProblem(e.Message);
                return false;
            }
            await Task.Delay(backoff, ct);
            backoff = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, backoff.Ticks * 2));
        }
    }

    private async Task<X509Certificate2> ResolveCaAsync(AgentJoinOptions join, AgentCredentials credentials, CancellationToken ct)
    {
        X509Certificate2 ca;
        if (join.CaFile is not null)
        {
            ca = Load(join.CaFile);
        }
        else if (join.CaFingerprint is not null)
        {
            using var channel = AgentChannel.Unverified(options.ServerUrl);
            var reply = await new AgentControl.AgentControlClient(channel).GetCaAsync(new CaRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
            try
            {
                ca = X509Certificate2.CreateFromPem(reply.CaPem);
            }
            catch (CryptographicException e)
            {
                throw new JoinException($"kumod at {options.ServerUrl} sent no usable CA certificate: {e.Message}");
            }
        }
        else if (File.Exists(credentials.CaPath))
        {
            ca = Load(credentials.CaPath);
        }
        else
        {
            throw new JoinException("joining needs kumod's CA: pass --ca-fingerprint SHA256 (printed by kumo node add-token) or --ca FILE (kumod's STATE/pki/ca.crt)");
        }
        var actual = CertificateFingerprint.Of(ca);
        if (join.CaFingerprint is { } expected && actual != expected)
        {
            ca.Dispose();
            throw new JoinException($"kumod at {options.ServerUrl} has CA fingerprint {actual}, not {expected} (--ca-fingerprint): not sending the join token");
        }
        return ca;
    }

    private async Task JoinAsync(X509Certificate2 ca, string token, AgentCredentials credentials, CancellationToken ct)
    {
        using var _ = ca;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = new CertificateRequest($"CN={options.NodeName}", key, HashAlgorithmName.SHA256).CreateSigningRequestPem();
        using var channel = AgentChannel.Create(options.ServerUrl, ca, client: null);
        var reply = await new AgentControl.AgentControlClient(channel).JoinAsync(
            new JoinRequest { Token = token, NodeName = options.NodeName, CsrPem = csr }, deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
        using (var issued = X509Certificate2.CreateFromPem(reply.CertificatePem))
        {
            if (!IsIssuedFor(issued, key))
                throw new JoinException("kumod answered the join with a certificate that is not for this agent's key");
        }
        credentials.Save(reply.CertificatePem, key.ExportPkcs8PrivateKeyPem(), ca.ExportCertificatePem(), token);
    }

    private static bool IsIssuedFor(X509Certificate2 certificate, ECDsa key)
    {
        using var publicKey = certificate.GetECDsaPublicKey();
        return publicKey is not null && publicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo());
    }

    private static X509Certificate2 Load(string path)
    {
        try
        {
            return CaTrust.LoadPem(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new JoinException($"cannot read the CA certificate {path}: {e.Message}");
        }
    }

    private sealed class JoinException(string message) : Exception(message);

    [LoggerMessage(LogLevel.Information, "joined as node {Name} at {Url}; certificate saved in {Path}")]
    private partial void LogJoined(string name, Uri url, string path);

    [LoggerMessage(LogLevel.Warning, "cannot reach kumod at {Url} to join: {Reason}; retrying")]
    private partial void LogWaiting(Uri url, string reason);

    [LoggerMessage(LogLevel.Error, "{Problem}")]
    private partial void LogProblem(string problem);
}
