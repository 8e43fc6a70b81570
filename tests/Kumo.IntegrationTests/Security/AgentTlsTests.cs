using System.Net;
using System.Text;
using Grpc.Core;
using Kumo.Core;
using Kumo.Core.Security;
using Kumo.IntegrationTests.Infrastructure;
using Kumo.Protocol;

namespace Kumo.IntegrationTests.Security;

/// <summary>A real kumod without a local agent; each test plays one or more agents over the real mTLS endpoint.</summary>
public sealed class BareKumod : IAsyncLifetime
{
    public KumoEnvironment Env { get; private set; } = null!;

    public async Task InitializeAsync() => Env = await KumoEnvironment.StartAsync(allInOne: false);

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

public sealed class AgentTlsTests(BareKumod fixture) : IClassFixture<BareKumod>
{
    private KumoEnvironment Env => fixture.Env;

    private async Task<bool> NodeExistsAsync(string name) => (await Env.Api.NodesAsync()).Any(n => n.Name == name);

    [Fact]
    public async Task RegisterAndHeartbeat_WithoutAClientCertificate_AreRefusedUnauthenticated()
    {
        using var anonymous = new AgentCalls(Env, null);

        var register = await Assert.ThrowsAsync<RpcException>(() => anonymous.RegisterAsync("nocert"));
        var heartbeat = await Assert.ThrowsAsync<RpcException>(() => anonymous.Client.HeartbeatAsync(new HeartbeatRequest { NodeId = "x" }).ResponseAsync);

        Assert.Equal(StatusCode.Unauthenticated, register.StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, heartbeat.StatusCode);
        Assert.Contains("certificate", register.Status.Detail);
        Assert.False(await NodeExistsAsync("nocert"));
    }

    [Fact]
    public async Task Register_WithACertificateFromAnotherCa_FailsAtTheTlsHandshake()
    {
        using var other = new TestPki("Impostor CA");
        using var impostor = new AgentCalls(Env, other.Client("rogue"));

        var e = await Assert.ThrowsAsync<RpcException>(() => impostor.RegisterAsync("rogue"));

        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.False(await NodeExistsAsync("rogue"));
    }

    [Fact]
    public async Task JoinedAgent_RegistersAndHeartbeats_WithItsCertificate()
    {
        using var agent = await AgentCalls.JoinAsync(Env, "honest1");

        var id = await agent.RegisterAsync("honest1");
        var beat = await agent.Client.HeartbeatAsync(new HeartbeatRequest { NodeId = id });

        Assert.True(beat.Known);
        Assert.True(await NodeExistsAsync("honest1"));
        Assert.Equal("honest1", agent.Certificate!.GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.SimpleName, false));
        Assert.True(CaTrust.ChainsTo(agent.Certificate, agent.Ca, CaTrust.ClientAuth));
    }

    [Fact]
    public async Task JoinToken_WorksOnceOnly()
    {
        var token = (await Env.Api.CreateNodeTokenAsync()).Token;
        using var first = await AgentCalls.JoinAsync(Env, "once1", token);

        var second = await Assert.ThrowsAsync<RpcException>(() => AgentCalls.JoinAsync(Env, "once2", token));

        Assert.Equal(StatusCode.PermissionDenied, second.StatusCode);
        Assert.Contains("already used", second.Status.Detail);
        Assert.NotNull(first.Certificate);
    }

    [Fact]
    public async Task JoinToken_IsStoredOnlyAsAHash()
    {
        var token = (await Env.Api.CreateNodeTokenAsync()).Token;

        foreach (var file in Directory.GetFiles(Env.StateDir, "kumo.db*"))
        {
            var bytes = await File.ReadAllBytesAsync(file);
            Assert.DoesNotContain(token, Encoding.Latin1.GetString(bytes), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task JoinToken_PastItsTtl_IsRefused()
    {
        var token = await Env.Api.CreateNodeTokenAsync("1s");
        // Waiting for a clock to pass a deadline: nothing to poll.
        var wait = token.ExpiresAt - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(200);
        if (wait > TimeSpan.Zero) await Task.Delay(wait);

        var e = await Assert.ThrowsAsync<RpcException>(() => AgentCalls.JoinAsync(Env, "late1", token.Token));

        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Contains("expired", e.Status.Detail);
    }

    [Fact]
    public async Task JoinToken_Unknown_IsRefused()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => AgentCalls.JoinAsync(Env, "guess1", "not-a-token"));

        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.False(await NodeExistsAsync("guess1"));
    }

    [Fact]
    public async Task Join_AsANodeThatAlreadyJoined_IsRefused_AndTheTokenStaysUsable()
    {
        using var original = await AgentCalls.JoinAsync(Env, "taken1");
        var token = (await Env.Api.CreateNodeTokenAsync()).Token;

        var e = await Assert.ThrowsAsync<RpcException>(() => AgentCalls.JoinAsync(Env, "taken1", token));
        using var other = await AgentCalls.JoinAsync(Env, "taken2", token);

        Assert.Equal(StatusCode.AlreadyExists, e.StatusCode);
        Assert.Contains("kumo node remove taken1", e.Status.Detail);
    }

    [Fact]
    public async Task Agent_CannotRegisterHeartbeatWatchOrReportForAnotherNode()
    {
        using var a = await AgentCalls.JoinAsync(Env, "mine1");
        using var b = await AgentCalls.JoinAsync(Env, "theirs1");
        var idA = await a.RegisterAsync("mine1");
        var idB = await b.RegisterAsync("theirs1");

        var register = await Assert.ThrowsAsync<RpcException>(() => a.RegisterAsync("theirs1"));
        var heartbeat = await Assert.ThrowsAsync<RpcException>(() => a.Client.HeartbeatAsync(new HeartbeatRequest { NodeId = idB }).ResponseAsync);
        var report = await Assert.ThrowsAsync<RpcException>(() =>
            a.Client.ReportStatusAsync(new StatusReport { NodeId = idB, Full = true }).ResponseAsync);
        using var watch = a.Client.WatchDesired(new WatchRequest { NodeId = idB });
        var watched = await Assert.ThrowsAsync<RpcException>(() => watch.ResponseStream.MoveNext());

        Assert.All(new[] { register, heartbeat, report, watched }, e => Assert.Equal(StatusCode.PermissionDenied, e.StatusCode));
        Assert.Contains("cannot", heartbeat.Status.Detail);
        Assert.NotEqual(idA, idB);
    }

    [Fact]
    public async Task Agent_CannotReportStatusOfAnotherNodesInstance()
    {
        using var a = await AgentCalls.JoinAsync(Env, "reporter1");
        using var b = await AgentCalls.JoinAsync(Env, "owner1");
        var idA = await a.RegisterAsync("reporter1");
        await b.RegisterAsync("owner1");
        var (status, op, problem) = await Env.Api.CreateAsync(new { name = "owned1", image = "tiny", memory = "128M", disk = "64M", node = "owner1", stopped = true });
        Assert.True(op is not null, $"{status} {problem?.Detail}");
        var instance = (await Env.Api.GetAsync("owned1"))!;

        await a.Client.ReportStatusAsync(new StatusReport
        {
            NodeId = idA,
            Instances = { new InstanceStatus { Id = instance.Id, State = InstanceStates.Running, Message = "forged" } },
        });

        var after = (await Env.Api.GetAsync("owned1"))!;
        Assert.Equal("owner1", after.Node);
        Assert.NotEqual(InstanceStates.Running, after.State);
        Assert.NotEqual("forged", after.StatusMessage);
    }

    [Fact]
    public async Task RemovedNode_IsRefused_UntilItJoinsAgainWithANewToken()
    {
        using var agent = await AgentCalls.JoinAsync(Env, "revoked1");
        var id = await agent.RegisterAsync("revoked1");
        using (var remove = await Env.Api.Http.DeleteAsync("/api/v1/nodes/revoked1"))
            Assert.Equal(HttpStatusCode.NoContent, remove.StatusCode);

        var register = await Assert.ThrowsAsync<RpcException>(() => agent.RegisterAsync("revoked1"));
        var heartbeat = await Assert.ThrowsAsync<RpcException>(() => agent.Client.HeartbeatAsync(new HeartbeatRequest { NodeId = id }).ResponseAsync);
        using var rejoined = await AgentCalls.JoinAsync(Env, "revoked1");
        await rejoined.RegisterAsync("revoked1");

        Assert.Equal(StatusCode.PermissionDenied, register.StatusCode);
        Assert.Contains("revoked", register.Status.Detail);
        Assert.Equal(StatusCode.PermissionDenied, heartbeat.StatusCode);
        Assert.True(await NodeExistsAsync("revoked1"));
    }

    [Fact]
    public async Task RemovingANodeThatJoinedButNeverRegistered_RevokesItsCertificate()
    {
        using var agent = await AgentCalls.JoinAsync(Env, "silent1");

        using (var remove = await Env.Api.Http.DeleteAsync("/api/v1/nodes/silent1"))
            Assert.Equal(HttpStatusCode.NoContent, remove.StatusCode);
        var e = await Assert.ThrowsAsync<RpcException>(() => agent.RegisterAsync("silent1"));

        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        using var again = await Env.Api.Http.DeleteAsync("/api/v1/nodes/silent1");
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
    }
}
