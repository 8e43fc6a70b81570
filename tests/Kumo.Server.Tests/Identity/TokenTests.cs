using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>Bearer tokens: forged, expired, revoked, or belonging to a disabled user, they stop working at once.</summary>
public sealed class TokenTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    private TestServer _server = null!;
    private HttpClient _alice = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        _alice = _server.ClientFor(await _server.AddUserAsync("alice", "alice-password"));
    }

    public async Task DisposeAsync()
    {
        _alice.Dispose();
        await _server.DisposeAsync();
    }

    [Theory]
    [InlineData("kumo_forged")]
    [InlineData("not-a-kumo-token")]
    [InlineData("")]
    public async Task ForgedToken_Returns401(string token)
    {
        using var forger = _server.ClientFor(null);
        forger.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "Bearer " + token);

        await (await forger.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
    }

    [Fact]
    public async Task RandomTokenInKumoFormat_Returns401()
    {
        using var forger = _server.ClientFor("kumo_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_'));

        await (await forger.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
    }

    [Fact]
    public async Task ApiToken_AfterItsTtl_Returns401()
    {
        var token = await CreateTokenAsync(_alice, ttl: "1s");
        Assert.NotNull(token.ExpiresAt);
        using var script = _server.ClientFor(token.Secret);
        // Used once while valid, so the server has cached it: expiry must beat the cache too.
        var first = await script.GetAsync("/api/v1/auth/whoami");
        Assert.True(first.StatusCode == HttpStatusCode.OK || DateTimeOffset.UtcNow >= token.ExpiresAt, $"token refused before its expiry: {first.StatusCode}");

        await PollUntilAsync(async () => (await script.GetAsync("/api/v1/auth/whoami")).StatusCode == HttpStatusCode.Unauthorized);

        await (await script.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
    }

    [Fact]
    public async Task RevokedToken_Returns401AtOnce()
    {
        var token = await CreateTokenAsync(_alice);
        using var script = _server.ClientFor(token.Secret);
        Assert.Equal(HttpStatusCode.OK, (await script.GetAsync("/api/v1/auth/whoami")).StatusCode);

        Assert.Equal(HttpStatusCode.NoContent, (await _alice.DeleteAsync($"/api/v1/tokens/{token.Id}")).StatusCode);

        await (await script.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        var listed = await _alice.GetFromJsonAsync<List<ApiToken>>("/api/v1/tokens", Problems.Json);
        Assert.DoesNotContain(listed!, t => t.Id == token.Id);
    }

    [Fact]
    public async Task DisabledUser_ExistingTokens_Return401AtOnce()
    {
        var apiToken = await CreateTokenAsync(_alice);
        using var script = _server.ClientFor(apiToken.Secret);
        Assert.Equal(HttpStatusCode.OK, (await _alice.GetAsync("/api/v1/auth/whoami")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await script.GetAsync("/api/v1/auth/whoami")).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await _server.Client.PostAsync("/api/v1/users/alice/disable", null)).StatusCode);

        await (await _alice.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        await (await script.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        using var anonymous = _server.ClientFor(null);
        await (await anonymous.PostAsync("/api/v1/auth/login", JsonContent.Create(new LoginRequest { Username = "alice", Password = "alice-password" }, options: Problems.Json)))
            .AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
    }

    [Fact]
    public async Task ReEnabledUser_TokensFromBeforeTheDisable_StayRevoked()
    {
        var apiToken = await CreateTokenAsync(_alice);
        using var script = _server.ClientFor(apiToken.Secret);
        Assert.Equal(HttpStatusCode.OK, (await _server.Client.PostAsync("/api/v1/users/alice/disable", null)).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await _server.Client.PostAsync("/api/v1/users/alice/enable", null)).StatusCode);

        await (await _alice.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        await (await script.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        using var again = _server.ClientFor(await _server.LoginAsync("alice", "alice-password"));
        Assert.Equal(HttpStatusCode.OK, (await again.GetAsync("/api/v1/auth/whoami")).StatusCode);
    }

    [Fact]
    public async Task Logout_RevokesTheSessionTokenOnly()
    {
        using var session = _server.ClientFor(await _server.LoginAsync("alice", "alice-password"));
        Assert.Equal(HttpStatusCode.OK, (await session.GetAsync("/api/v1/auth/whoami")).StatusCode);

        Assert.Equal(HttpStatusCode.NoContent, (await session.PostAsync("/api/v1/auth/logout", null)).StatusCode);

        await (await session.GetAsync("/api/v1/auth/whoami")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        Assert.Equal(HttpStatusCode.OK, (await _alice.GetAsync("/api/v1/auth/whoami")).StatusCode);
    }

    [Fact]
    public async Task OtherUsersSession_RevokingAlicesToken_Returns404AndTheTokenStillWorks()
    {
        var token = await CreateTokenAsync(_alice);
        using var bob = _server.ClientFor(await _server.AddUserAsync("bob", "bob-password"));

        await (await bob.DeleteAsync($"/api/v1/tokens/{token.Id}")).AssertProblemAsync(HttpStatusCode.NotFound, ProblemTypes.NotFound);

        using var script = _server.ClientFor(token.Secret);
        Assert.Equal(HttpStatusCode.OK, (await script.GetAsync("/api/v1/auth/whoami")).StatusCode);
        Assert.DoesNotContain((await bob.GetFromJsonAsync<List<ApiToken>>("/api/v1/tokens", Problems.Json))!, t => t.Id == token.Id);
    }

    [Fact]
    public async Task ApiTokenSecret_IsShownOnlyInTheAnswerToTheCreate()
    {
        var token = await CreateTokenAsync(_alice);

        var listed = await _alice.GetStringAsync("/api/v1/tokens");

        Assert.StartsWith("kumo_", token.Secret);
        Assert.Contains(token.Id, listed);
        Assert.DoesNotContain(token.Secret!, listed);
    }

    private static async Task<ApiToken> CreateTokenAsync(HttpClient owner, string? ttl = null)
    {
        using var r = await owner.PostAsync("/api/v1/tokens", JsonContent.Create(new TokensPost { Name = "script", Ttl = ttl }, options: Problems.Json));
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        return (await r.Content.ReadFromJsonAsync<ApiToken>(Problems.Json))!;
    }

    /// <summary>Polls until <paramref name="done"/> holds; fails after the deadline.</summary>
    private static async Task PollUntilAsync(Func<Task<bool>> done)
    {
        var deadline = DateTimeOffset.UtcNow + Deadline;
        while (DateTimeOffset.UtcNow < deadline)
        {
            if (await done()) return;
            await Task.Delay(100);
        }
        throw new TimeoutException($"condition not met within {Deadline}");
    }
}
