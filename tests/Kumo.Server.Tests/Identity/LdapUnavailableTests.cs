using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Kumo.Server.Identity.Ldap;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>A directory that cannot answer is an error of its own, never a wrong password, and it comes quickly.</summary>
[Trait("Category", "Slow")]
public sealed class LdapUnavailableTests
{
    private static readonly TimeSpan LoginTimeout = TimeSpan.FromSeconds(1);
    // The configured timeout plus the authenticator's grace and some scheduling slack.
    private static readonly TimeSpan Bound = LoginTimeout + TimeSpan.FromSeconds(2);

    [Fact]
    public async Task Authenticate_DirectoryStopped_ThrowsUnavailableQuickly()
    {
        var slapd = new SlapdFixture();
        await slapd.InitializeAsync();
        try
        {
            var authenticator = Authenticator(slapd.Url);
            Assert.NotNull(await authenticator.AuthenticateAsync("alice", SlapdFixture.AlicePassword, CancellationToken.None));

            await slapd.StopAsync();

            await AssertUnavailableWithinBoundAsync(authenticator);
        }
        finally
        {
            await slapd.DisposeAsync();
        }
    }

    [Fact]
    public async Task Authenticate_WrongPort_ThrowsUnavailableQuickly() =>
        await AssertUnavailableWithinBoundAsync(Authenticator(LdapAuthenticatorTests.ClosedPortUrl()));

    [Fact]
    public async Task Authenticate_ServerThatAcceptsButNeverAnswers_ThrowsUnavailableWithinTimeout()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var port = ((IPEndPoint)silent.LocalEndpoint).Port;

        await AssertUnavailableWithinBoundAsync(Authenticator($"ldap://127.0.0.1:{port}"));
    }

    [Fact]
    public async Task Authenticate_CancelledWhileDirectoryHangs_StopsWaiting()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var port = ((IPEndPoint)silent.LocalEndpoint).Port;
        var authenticator = Authenticator($"ldap://127.0.0.1:{port}");
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        var clock = Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => authenticator.AuthenticateAsync("alice", SlapdFixture.AlicePassword, cts.Token));
        Assert.True(clock.Elapsed < LoginTimeout, $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task Authenticate_WhileChildProcessesExit_WaitsOutTheTimeoutInsteadOfReportingTheServerDown()
    {
        // kumod's children exit all the time, and each exit sends it SIGCHLD. A signal that lands on
        // the thread waiting in libldap ends the wait at once as "server down": without ChildSignals
        // and the retry, this test failed 5 runs out of 5.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var port = ((IPEndPoint)silent.LocalEndpoint).Port;
        using var stop = new CancellationTokenSource();
        // Several at once, so some signal is likely to pick the waiting thread among the process's many.
        var children = Task.WhenAll(Enumerable.Range(0, 4).Select(_ => ExitChildrenUntilAsync(stop.Token)));

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<LdapUnavailableException>(
            () => Authenticator($"ldap://127.0.0.1:{port}").AuthenticateAsync("alice", SlapdFixture.AlicePassword, CancellationToken.None));
        await stop.CancelAsync();
        var exited = (await children).Sum();

        Assert.Contains("timed out", error.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed >= LoginTimeout * 0.9 && clock.Elapsed < Bound, $"took {clock.Elapsed}");
        Assert.True(exited >= 1, "no child exited during the login");
    }

    private static async Task<int> ExitChildrenUntilAsync(CancellationToken stop)
    {
        var exited = 0;
        while (!stop.IsCancellationRequested)
        {
            using var child = Process.Start(new ProcessStartInfo("/bin/sleep", "10"))!;
            await Task.Delay(TimeSpan.FromMilliseconds(20), CancellationToken.None);
            child.Kill();
            await child.WaitForExitAsync(CancellationToken.None);
            exited++;
        }
        return exited;
    }

    private static async Task AssertUnavailableWithinBoundAsync(LdapAuthenticator authenticator)
    {
        var clock = Stopwatch.StartNew();
        await Assert.ThrowsAsync<LdapUnavailableException>(
            () => authenticator.AuthenticateAsync("alice", SlapdFixture.AlicePassword, CancellationToken.None));
        Assert.True(clock.Elapsed < Bound, $"took {clock.Elapsed}");
    }

    private static LdapAuthenticator Authenticator(string url) => new(
        new LdapOptions
        {
            Url = url,
            BaseDn = SlapdFixture.PeopleDn,
            BindDn = SlapdFixture.ServiceDn,
            BindPassword = SlapdFixture.ServicePassword,
            Timeout = LoginTimeout,
        },
        new ListLogger<LdapAuthenticator>());
}
