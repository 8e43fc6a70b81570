using System.Net;
using System.Net.Sockets;
using Kumo.Server.Identity.Ldap;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>Logins against a real slapd; the tree is described on <see cref="SlapdFixture"/>.</summary>
[Trait("Category", "Slow")]
public sealed class LdapAuthenticatorTests(SlapdFixture slapd) : IClassFixture<SlapdFixture>
{
    // Strings an attacker might try as a login name. Labelled, because some (NUL, look-alike letters)
    // would make unreadable test names.
    private static readonly Dictionary<string, string> Injections = new()
    {
        ["star"] = "*",
        ["close-and-match-all"] = "*)(uid=*",
        ["or-match-all"] = "alice)(|(uid=*",
        ["escaped-nul-text"] = @"\00",
        ["nul-byte"] = "alice\0",
        ["escaped-star-text"] = @"alice\2a",
        ["trailing-star"] = "alice*",
        ["whole-filter"] = "(uid=alice)",
        ["upper-case"] = "ALICE",
        ["capitalised"] = "Alice",
        ["65-chars"] = new string('a', 65),
        ["cyrillic-a"] = "\u0430lice",
        ["dotless-i"] = "al\u0131ce",
        ["fullwidth"] = "\uff41\uff4c\uff49\uff43\uff45",
        ["spaces"] = " alice ",
        ["newline"] = "alice\n",
        ["empty"] = "",
    };

    public static TheoryData<string> InjectionLabels => [.. Injections.Keys];

    private readonly CancellationToken _ct = CancellationToken.None;

    [Fact]
    public async Task Authenticate_WithRightPassword_ReturnsUserWithDirectoryDetails()
    {
        var user = await Authenticator().AuthenticateAsync("alice", SlapdFixture.AlicePassword, _ct);

        Assert.Equal(new LdapUser("alice", $"uid=alice,{SlapdFixture.PeopleDn}", "Alice Liddell", "alice@kumo.test", IsAdmin: false), user);
    }

    [Fact]
    public async Task Authenticate_EntryWithoutDisplayName_UsesCn()
    {
        var user = await Authenticator().AuthenticateAsync("bob", SlapdFixture.BobPassword, _ct);

        Assert.Equal("Bob Builder", user?.DisplayName);
    }

    [Fact]
    public async Task Authenticate_WithWrongPassword_ReturnsNull() =>
        Assert.Null(await Authenticator().AuthenticateAsync("alice", SlapdFixture.BobPassword, _ct));

    [Fact]
    public async Task Authenticate_UnknownUser_ReturnsNull() =>
        Assert.Null(await Authenticator().AuthenticateAsync("mallory", SlapdFixture.AlicePassword, _ct));

    [Fact]
    public async Task Authenticate_DisabledAccount_ReturnsNullEvenWithRightPassword() =>
        Assert.Null(await Authenticator().AuthenticateAsync("carol", SlapdFixture.CarolPassword, _ct));

    [Fact]
    public async Task Authenticate_DisabledCheckTurnedOff_LetsTheAccountIn()
    {
        var options = Options() with { DisabledAttribute = null };

        var user = await Authenticator(options).AuthenticateAsync("carol", SlapdFixture.CarolPassword, _ct);

        Assert.Equal("carol", user?.Username);
    }

    [Fact]
    public async Task Authenticate_MemberOfAdminGroupOfNames_IsAdmin()
    {
        var user = await Authenticator().AuthenticateAsync("dave", SlapdFixture.DavePassword, _ct);

        Assert.True(user?.IsAdmin);
        Assert.Equal("Dave the Admin", user?.DisplayName);
    }

    [Fact]
    public async Task Authenticate_NotInAdminGroup_IsNotAdmin() =>
        Assert.False((await Authenticator().AuthenticateAsync("alice", SlapdFixture.AlicePassword, _ct))?.IsAdmin);

    [Fact]
    public async Task Authenticate_MemberUidOfAdminPosixGroup_IsAdmin()
    {
        var authenticator = Authenticator(Options() with { AdminGroupDn = SlapdFixture.OperatorsGroupDn });

        Assert.True((await authenticator.AuthenticateAsync("bob", SlapdFixture.BobPassword, _ct))?.IsAdmin);
        Assert.False((await authenticator.AuthenticateAsync("dave", SlapdFixture.DavePassword, _ct))?.IsAdmin);
    }

    [Fact]
    public async Task Authenticate_AdminGroupMissing_NobodyIsAdmin()
    {
        var options = Options() with { AdminGroupDn = $"cn=nope,ou=groups,{SlapdFixture.Suffix}" };

        Assert.False((await Authenticator(options).AuthenticateAsync("dave", SlapdFixture.DavePassword, _ct))?.IsAdmin);
    }

    [Fact]
    public async Task Authenticate_WithoutServiceAccount_SearchesAnonymously()
    {
        var options = Options() with { BindDn = null, BindPassword = null };

        Assert.Equal("alice", (await Authenticator(options).AuthenticateAsync("alice", SlapdFixture.AlicePassword, _ct))?.Username);
    }

    [Fact]
    public async Task Authenticate_NameMatchingTwoEntries_ReturnsNull() =>
        Assert.Null(await Authenticator().AuthenticateAsync("eve", SlapdFixture.EvePassword, _ct));

    [Fact]
    public async Task Authenticate_EmptyPassword_ReturnsNullWithoutContactingTheDirectory()
    {
        // A closed port: had the authenticator tried to bind, it would have thrown LdapUnavailableException.
        var unreachable = Authenticator(Options() with { Url = ClosedPortUrl() });

        Assert.Null(await unreachable.AuthenticateAsync("alice", "", _ct));
        Assert.Null(await Authenticator().AuthenticateAsync("alice", "", _ct));
    }

    [Theory]
    [MemberData(nameof(InjectionLabels))]
    public async Task Authenticate_InjectionUsername_IsRefusedWithoutContactingTheDirectory(string label)
    {
        var unreachable = Authenticator(Options() with { Url = ClosedPortUrl() });

        Assert.Null(await unreachable.AuthenticateAsync(Injections[label], SlapdFixture.AlicePassword, _ct));
    }

    [Theory]
    [MemberData(nameof(InjectionLabels))]
    public async Task Authenticate_InjectionUsername_NeverMatchesAnotherEntry(string label)
    {
        var authenticator = Authenticator();

        foreach (var password in new[] { SlapdFixture.AlicePassword, SlapdFixture.DavePassword, SlapdFixture.ServicePassword })
        {
            Assert.Null(await authenticator.AuthenticateAsync(Injections[label], password, _ct));
        }
    }

    [Fact]
    public async Task Authenticate_WrongServicePassword_ThrowsUnavailable()
    {
        var options = Options() with { BindPassword = "not-the-service-password" };

        await Assert.ThrowsAsync<LdapUnavailableException>(
            () => Authenticator(options).AuthenticateAsync("alice", SlapdFixture.AlicePassword, _ct));
    }

    [Fact]
    public async Task Authenticate_NeverLogsPasswords()
    {
        var logger = new ListLogger<LdapAuthenticator>();
        var authenticator = new LdapAuthenticator(Options(), logger);
        var wrongService = new LdapAuthenticator(Options() with { BindPassword = "wrong-Service-Secret" }, logger);

        await authenticator.AuthenticateAsync("alice", SlapdFixture.AlicePassword, _ct);
        await authenticator.AuthenticateAsync("alice", "typo-Secret-2", _ct);
        await authenticator.AuthenticateAsync("carol", SlapdFixture.CarolPassword, _ct);
        await authenticator.AuthenticateAsync("alice-Secret-1", "whatever", _ct);
        await Assert.ThrowsAsync<LdapUnavailableException>(
            () => wrongService.AuthenticateAsync("dave", SlapdFixture.DavePassword, _ct));

        Assert.NotEmpty(logger.Messages);
        foreach (var secret in new[] { SlapdFixture.AlicePassword, "typo-Secret-2", SlapdFixture.CarolPassword, "wrong-Service-Secret", SlapdFixture.DavePassword, SlapdFixture.ServicePassword })
        {
            Assert.DoesNotContain(logger.Messages, m => m.Contains(secret, StringComparison.Ordinal));
        }
    }

    private LdapOptions Options() => new()
    {
        Url = slapd.Url,
        BaseDn = SlapdFixture.PeopleDn,
        BindDn = SlapdFixture.ServiceDn,
        BindPassword = SlapdFixture.ServicePassword,
        AdminGroupDn = SlapdFixture.AdminsGroupDn,
        Timeout = TimeSpan.FromSeconds(5),
    };

    private LdapAuthenticator Authenticator(LdapOptions? options = null) =>
        new(options ?? Options(), new ListLogger<LdapAuthenticator>());

    /// <summary>A loopback port nothing listens on (it was free a moment ago).</summary>
    internal static string ClosedPortUrl()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return $"ldap://127.0.0.1:{port}";
    }
}
