using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity.Ldap;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>Login through kumod's REST API against a real slapd: LDAP users get accounts, roles and projects.</summary>
[Trait("Category", "Slow")]
public sealed class LdapLoginTests : IAsyncLifetime
{
    private readonly SlapdFixture _slapd = new();
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        await _slapd.InitializeAsync();
        _server = await TestServer.StartAsync(ldap: new LdapOptions
        {
            Url = _slapd.Url,
            BaseDn = SlapdFixture.PeopleDn,
            BindDn = SlapdFixture.ServiceDn,
            BindPassword = SlapdFixture.ServicePassword,
            AdminGroupDn = SlapdFixture.AdminsGroupDn,
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _slapd.DisposeAsync();
    }

    private async Task<HttpResponseMessage> LoginAsync(string user, string password)
    {
        using var anonymous = _server.ClientFor(null);
        return await anonymous.PostAsync("/api/v1/auth/login", JsonContent.Create(new LoginRequest { Username = user, Password = password }, options: Problems.Json));
    }

    [Fact]
    public async Task LdapUser_LogsIn_GetsAPersonalProjectAndTheUserRole()
    {
        using var r = await LoginAsync("alice", SlapdFixture.AlicePassword);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var login = (await r.Content.ReadFromJsonAsync<LoginResponse>(Problems.Json))!;
        Assert.Equal("ldap", login.User.Source);
        Assert.Equal("user", login.User.Role);
        Assert.Contains("alice", login.User.Projects);
        using var alice = _server.ClientFor(login.Token);
        Assert.Equal(HttpStatusCode.OK, (await alice.GetAsync("/api/v1/instances")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await alice.GetAsync("/api/v1/users")).StatusCode);
    }

    [Fact]
    public async Task MemberOfTheAdminGroup_IsAnAdmin()
    {
        using var r = await LoginAsync("dave", SlapdFixture.DavePassword);
        var login = (await r.Content.ReadFromJsonAsync<LoginResponse>(Problems.Json))!;
        Assert.Equal("admin", login.User.Role);
        using var dave = _server.ClientFor(login.Token);
        Assert.Equal(HttpStatusCode.OK, (await dave.GetAsync("/api/v1/users")).StatusCode);
    }

    [Theory]
    [InlineData("alice", "wrong-password")]
    [InlineData("carol", SlapdFixture.CarolPassword)]
    [InlineData("mallory", "whatever-1")]
    public async Task WrongPasswordDisabledOrUnknown_Is401WithOneMessage(string user, string password)
    {
        using var r = await LoginAsync(user, password);
        var problem = await r.AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        Assert.Equal("wrong username or password, or the account is disabled", problem.Detail);
    }

    [Fact]
    public async Task DirectoryDown_Is503NotAWrongPassword()
    {
        await _slapd.StopAsync();
        using var r = await LoginAsync("alice", SlapdFixture.AlicePassword);
        await r.AssertProblemAsync(HttpStatusCode.ServiceUnavailable, ProblemTypes.DirectoryUnavailable);
    }
}
