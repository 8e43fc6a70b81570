using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Core.Security;
using Kumo.Server.Api;
using Kumo.Server.Audit;
using Microsoft.Extensions.DependencyInjection;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Tests.Api;

/// <summary>
/// kumod --dev-no-auth-no-audit exists for the AAA benchmark only: it is refused off loopback, and without it every
/// request is authenticated, authorized and audited.
/// </summary>
public sealed class DevNoAuthNoAuditTests
{
    [Fact]
    public void Build_WithTheDevFlagOnANonLoopbackAddress_IsRefused()
    {
        using var dir = new TempDirectory();

        var e = Assert.Throws<InvalidOperationException>(() => KumoServer.Build(Options(dir.Path, IPAddress.Any, dev: true)));

        Assert.Contains("--dev-no-auth-no-audit is refused", e.Message);
        Assert.Contains("loopback", e.Message);
    }

    [Fact]
    public async Task WithoutTheDevFlag_AnAnonymousRead_Is401_AndAudited()
    {
        await using var server = await TestServer.StartAsync();
        using var anonymous = new HttpClient(TestServer.Trusting(server.Ca)) { BaseAddress = server.Api };
        var before = (await server.RowsAsync()).Count;

        using var response = await anonymous.GetAsync("/api/v1/instances");

        await response.AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        var row = Assert.Single((await server.RowsAsync()).Skip(before));
        Assert.Equal(("instance.list", "denied", 401L, (string?)null), (row.Action, row.Outcome, row.Status, row.UserName));
    }

    [Fact]
    public async Task WithTheDevFlagOnLoopback_AnAnonymousCallerActsAsTheAdmin_AndNothingIsAudited()
    {
        using var dir = new TempDirectory();
        var logs = new CapturingLoggerProvider();
        var app = KumoServer.Build(Options(dir.Path, IPAddress.Loopback, dev: true), b =>
        {
            b.Logging.ClearProviders();
            logs.AddTo(b);
        });
        await app.StartAsync();
        try
        {
            var before = (await AuditTable.RowsAsync(dir.Path)).Count;
            using var anonymous = new HttpClient(TestServer.Trusting(CaTrust.LoadPem(Path.Combine(dir.Path, "pki", "ca.crt"))))
            {
                BaseAddress = KumoServer.BoundAddresses(app).Api,
            };

            var me = await anonymous.GetFromJsonAsync<User>("/api/v1/auth/whoami", Problems.Json);
            using var users = await anonymous.GetAsync("/api/v1/users");

            Assert.Equal(("admin", "admin"), (me!.Name, me.Role));
            Assert.Equal(HttpStatusCode.OK, users.StatusCode);
            await app.Services.GetRequiredService<AuditLog>().FlushToTableAsync(CancellationToken.None);
            Assert.Equal(before, (await AuditTable.RowsAsync(dir.Path)).Count);
            Assert.Contains(logs.Lines, l => l.StartsWith("Critical ", StringComparison.Ordinal) && l.Contains("--dev-no-auth-no-audit", StringComparison.Ordinal));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    private static KumoServerOptions Options(string stateDir, IPAddress address, bool dev) => new()
    {
        StateDir = stateDir,
        ApiEndpoint = new IPEndPoint(address, 0),
        AgentEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
        DevNoAuthNoAudit = dev,
    };
}
