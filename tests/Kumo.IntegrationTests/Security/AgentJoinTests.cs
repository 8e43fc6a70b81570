using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Security;

/// <summary>The real kumo-agent process joining, restarting and being turned away.</summary>
public sealed class AgentJoinTests(BareKumod fixture) : IClassFixture<BareKumod>
{
    private KumoEnvironment Env => fixture.Env;

    private static async Task<int> ExitCodeAsync(DaemonProcess agent)
    {
        Assert.True(await agent.WaitForExitAsync(TimeSpan.FromSeconds(60)), "kumo-agent should have given up:\n" + agent.Log);
        return agent.ExitCode;
    }

    [Fact]
    public async Task Agent_JoinsWithTokenAndCaFingerprint_ThenRestartsWithoutAToken()
    {
        var token = await Env.Api.CreateNodeTokenAsync();

        var agent = await Env.StartAgentAsync("fp1", extra: ["--join-token", token.Token, "--ca-fingerprint", token.CaFingerprint]);
        var pki = Path.Combine(Env.AgentStateDir("fp1"), "pki");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(pki, "node.key")));
        Assert.DoesNotContain(token.Token, string.Concat(Directory.GetFiles(pki).Select(File.ReadAllText)));

        Assert.True(agent.Stop(TimeSpan.FromSeconds(30)));
        // The state dir now holds a certificate, so no token is passed this time.
        var restarted = await Env.StartAgentAsync("fp1");
        await ApiClient.EventuallyAsync(() => Task.FromResult(restarted.Log), log => log.Contains("registered node fp1", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "the restarted agent to register");
        Assert.DoesNotContain("joined as node", restarted.Log);
    }

    [Fact]
    public async Task Agent_WithAUsedToken_ExitsNonZeroSayingSo()
    {
        var token = (await Env.Api.CreateNodeTokenAsync()).Token;
        using (await AgentCalls.JoinAsync(Env, "first1", token))
        {
        }

        var agent = Env.StartAgentProcess("second1", "--join-token", token, "--ca", Env.CaPath);

        Assert.Equal(1, await ExitCodeAsync(agent));
        Assert.Contains("already used", agent.Log);
        Assert.DoesNotContain((await Env.Api.NodesAsync()), n => n.Name == "second1");
    }

    [Fact]
    public async Task Agent_WithAWrongCaFingerprint_NeverSendsTheToken()
    {
        using var other = new TestPki();
        var token = (await Env.Api.CreateNodeTokenAsync()).Token;

        var agent = Env.StartAgentProcess("wary1", "--join-token", token, "--ca-fingerprint", other.Fingerprint);

        Assert.Equal(1, await ExitCodeAsync(agent));
        Assert.Contains("not sending the join token", agent.Log);
        // Still unspent: the token never reached kumod.
        using var joined = await AgentCalls.JoinAsync(Env, "wary2", token);
    }

    [Fact]
    public async Task Agent_WithoutCertificateOrToken_ExitsWithInstructions()
    {
        var agent = Env.StartAgentProcess("bare1");

        Assert.Equal(1, await ExitCodeAsync(agent));
        Assert.Contains("--join-token", agent.Log);
    }

    [Fact]
    public async Task Agent_OfARemovedNode_IsRefusedAndStaysOut()
    {
        var agent = await Env.StartAgentAsync("gone1", cpus: 1, memory: "1G");

        using (var remove = await Env.Api.Http.DeleteAsync("/api/v1/nodes/gone1"))
            remove.EnsureSuccessStatusCode();

        await ApiClient.EventuallyAsync(() => Task.FromResult(agent.Log), log => log.Contains("refused node gone1", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "the agent to be refused");
        Assert.Contains("revoked", agent.Log);
        Assert.DoesNotContain(await Env.Api.NodesAsync(), n => n.Name == "gone1");
    }
}
