using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using Kumo.Agent.Security;
using Kumo.Core.Security;
using Kumo.Protocol;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>
/// Speaks the agent protocol to a real kumod the way kumo-agent does (same TLS channel), so a test can make exactly the
/// calls an honest or a misbehaving agent would.
/// </summary>
public sealed class AgentCalls : IDisposable
{
    private readonly GrpcChannel _channel;

    public AgentCalls(KumoEnvironment env, X509Certificate2? certificate)
    {
        Ca = CaTrust.LoadPem(env.CaPath);
        Certificate = certificate;
        _channel = AgentChannel.Create(new Uri(env.AgentUrl), Ca, certificate);
        Client = new AgentControl.AgentControlClient(_channel);
    }

    public X509Certificate2 Ca { get; }
    public X509Certificate2? Certificate { get; }
    public AgentControl.AgentControlClient Client { get; }

    /// <summary>Joins as <paramref name="nodeName"/> with a token (a fresh one unless given); returns a caller holding the new certificate.</summary>
    public static async Task<AgentCalls> JoinAsync(KumoEnvironment env, string nodeName, string? token = null)
    {
        token ??= (await env.Api.CreateNodeTokenAsync()).Token;
        using var anonymous = new AgentCalls(env, null);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var reply = await anonymous.Client.JoinAsync(new JoinRequest { Token = token, NodeName = nodeName, CsrPem = Csr(nodeName, key) });
        using var issued = X509Certificate2.CreateFromPem(reply.CertificatePem);
        return new AgentCalls(env, issued.CopyWithPrivateKey(key));
    }

    public static string Csr(string nodeName, ECDsa key) =>
        new CertificateRequest($"CN={nodeName}", key, HashAlgorithmName.SHA256).CreateSigningRequestPem();

    public async Task<string> RegisterAsync(string nodeName, int cpus = 2, long memory = 2L << 30) =>
        (await Client.RegisterAsync(new RegisterRequest
        {
            NodeName = nodeName,
            Cpus = cpus,
            MemoryBytes = memory,
            Accelerator = "tcg",
            AgentVersion = "test",
        })).NodeId;

    public void Dispose()
    {
        _channel.Dispose();
        Certificate?.Dispose();
        Ca.Dispose();
    }
}
