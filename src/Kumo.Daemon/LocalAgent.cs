using Kumo.Agent;
using System.Security.Cryptography.X509Certificates;
using Kumo.Agent.Security;
using Kumo.Server.Security;

namespace Kumo.Daemon;

/// <summary>
/// The agent inside kumod --all-in-one needs no join token: kumod issues it a certificate directly and saves it in
/// the agent's STATE/agent/pki, exactly where a joined agent keeps its own.
/// </summary>
internal static class LocalAgent
{
    /// <summary>Keeps the saved certificate while kumod still honours it; issues a new one otherwise.</summary>
    public static async Task EnsureEnrolledAsync(NodeCertificates certificates, ServerPki pki, AgentOptions agent, CancellationToken ct)
    {
        var credentials = new AgentCredentials(agent.StateDir);
        if (credentials.HasCertificate)
        {
            using var saved = credentials.LoadClientCertificate();
            using var pinned = credentials.LoadCa();
            if (await certificates.IsValidAsync(saved, agent.NodeName, ct) && pinned.RawData.AsSpan().SequenceEqual(pki.Ca.RawData))
                return;
        }
        await EnrollAsync(certificates, pki, agent, ct);
    }

    public static async Task EnrollAsync(NodeCertificates certificates, ServerPki pki, AgentOptions agent, CancellationToken ct)
    {
        using var issued = await certificates.IssueLocalAsync(agent.NodeName, ct);
        new AgentCredentials(agent.StateDir).Save(issued.ExportCertificatePem(), issued.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(),
            pki.Ca.ExportCertificatePem(), token: null);
    }
}
