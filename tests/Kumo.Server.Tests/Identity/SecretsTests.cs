using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.RegularExpressions;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Identity;

/// <summary>Passwords and token secrets never reach a log line, a table (other than as a hash) or a state file.</summary>
public sealed partial class SecretsTests(SecretsTests.Session session) : IClassFixture<SecretsTests.Session>
{
    private readonly CapturingLoggerProvider _logs = session.Logs;
    private readonly List<string> _secrets = session.Secrets;
    private readonly TestServer _server = session.Server;

    [Fact]
    public void Logs_ContainNoPasswordOrToken()
    {
        Assert.NotEmpty(_logs.Lines); // the capture works: kumod logs at least its bootstrap and requests
        foreach (var secret in _secrets)
            Assert.DoesNotContain(_logs.Lines, line => line.Contains(secret, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Tables_HoldPasswordsOnlyAsPbkdf2Hashes()
    {
        var values = await _server.Database.ReadAsync(c =>
        {
            var all = new List<string>();
            foreach (var table in c.Query<string>("SELECT name FROM sqlite_master WHERE type = 'table'"))
            {
                foreach (IDictionary<string, object?> row in c.Query($"SELECT * FROM \"{table}\""))
                    all.AddRange(row.Values.Select(v => v is byte[] b ? Encoding.UTF8.GetString(b) : Convert.ToString(v) ?? ""));
            }
            return all;
        }, CancellationToken.None);
        var hashes = await _server.Database.ReadAsync(c => c.Query<string>("SELECT password_hash FROM users").ToList(), CancellationToken.None);

        foreach (var secret in _secrets)
            Assert.DoesNotContain(values, v => v.Contains(secret, StringComparison.Ordinal));
        Assert.Equal(4, hashes.Count);
        Assert.All(hashes, h => Assert.Matches(Pbkdf2Hash(), h));
    }

    [Fact]
    public void StateFiles_HoldNoPasswordOrToken_ExceptTheInitialAdminCredential()
    {
        var stateDir = _server.App.Services.GetRequiredService<KumoServerOptions>().StateDir;
        foreach (var file in Directory.EnumerateFiles(stateDir, "*", SearchOption.AllDirectories))
        {
            byte[] bytes;
            try
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var copy = new MemoryStream();
                stream.CopyTo(copy);
                bytes = copy.ToArray();
            }
            catch (FileNotFoundException)
            {
                // A durable write's temporary file was renamed into place after the listing; its content is in the final file, read in its turn.
                continue;
            }
            foreach (var secret in _secrets)
            {
                if (secret == _server.AdminPassword && file == KumoServer.InitialAdminFile(stateDir)) continue;
                Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(secret)) < 0, $"{Path.GetFileName(file)} holds a secret");
            }
        }
    }

    [GeneratedRegex(@"^pbkdf2-sha256\$600000\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=\z")]
    private static partial Regex Pbkdf2Hash();

    /// <summary>One kumod, driven once through every path that handles a password or token.</summary>
    public sealed class Session : IAsyncLifetime
    {
        public CapturingLoggerProvider Logs { get; } = new();
        public List<string> Secrets { get; } = [];
        public TestServer Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            Server = await TestServer.StartAsync(Logs.AddTo);
            await ExerciseEveryPathThatSeesASecretAsync();
        }

        public async Task DisposeAsync() => await Server.DisposeAsync();

        /// <summary>Creates, logs in, fails, changes passwords and mints tokens, remembering every secret it used.</summary>
        private async Task ExerciseEveryPathThatSeesASecretAsync()
        {
            Secrets.Add(Server.AdminPassword);
            Secrets.Add(Server.AdminToken);
            Secrets.Add(await Server.AddUserAsync("alice", Remember("alice-first-password")));
            using var anonymous = Server.ClientFor(null);

            using (var created = await Server.Client.PostAsync("/api/v1/users", Json(new UsersPost { Name = "carol" })))
            {
                Assert.Equal(HttpStatusCode.Created, created.StatusCode);
                var generated = (await created.Content.ReadFromJsonAsync<UserCreated>(Problems.Json))!.Password!;
                Secrets.Add(generated);
                Secrets.Add(await Server.LoginAsync("carol", generated));
            }
            using (var weak = await Server.Client.PostAsync("/api/v1/users", Json(new UsersPost { Name = "dave", Password = Remember("short") })))
                Assert.Equal(HttpStatusCode.BadRequest, weak.StatusCode);
            Secrets.Add(await Server.AddUserAsync("erin", Remember("erin-password-1")));

            foreach (var (user, password) in new[] { ("alice", Remember("wrong-guess-1")), ("nobody", Remember("wrong-guess-2")) })
            {
                using var failed = await anonymous.PostAsync("/api/v1/auth/login", Json(new LoginRequest { Username = user, Password = password }));
                Assert.Equal(HttpStatusCode.Unauthorized, failed.StatusCode);
            }
            using (var tooLong = await anonymous.PostAsync("/api/v1/auth/login", Json(new LoginRequest { Username = "alice", Password = Remember(new string('p', 2000)) })))
                Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
            using (var broken = await anonymous.PostAsync("/api/v1/auth/login",
                new StringContent($"{{\"username\":\"alice\",\"password\":\"{Remember("broken-json-password")}", Encoding.UTF8, "application/json")))
                Assert.Equal(HttpStatusCode.BadRequest, broken.StatusCode);

            using var alice = Server.ClientFor(await Server.LoginAsync("alice", "alice-first-password"));
            using (var wrongCurrent = await alice.PostAsync("/api/v1/auth/password", Json(new PasswordChange { Current = Remember("not-the-current"), New = Remember("never-set-password") })))
                Assert.Equal(HttpStatusCode.Forbidden, wrongCurrent.StatusCode);
            using (var changed = await alice.PostAsync("/api/v1/auth/password", Json(new PasswordChange { Current = "alice-first-password", New = Remember("alice-second-password") })))
                Assert.Equal(HttpStatusCode.NoContent, changed.StatusCode);
            var session = await Server.LoginAsync("alice", "alice-second-password");
            Secrets.Add(session);
            using var again = Server.ClientFor(session);
            using (var minted = await again.PostAsync("/api/v1/tokens", Json(new TokensPost { Name = "ci" })))
            {
                Assert.Equal(HttpStatusCode.Created, minted.StatusCode);
                var secret = (await minted.Content.ReadFromJsonAsync<ApiToken>(Problems.Json))!.Secret!;
                Secrets.Add(secret);
                using var script = Server.ClientFor(secret);
                Assert.Equal(HttpStatusCode.OK, (await script.GetAsync("/api/v1/auth/whoami")).StatusCode);
            }
            using (var logout = await again.PostAsync("/api/v1/auth/logout", null))
                Assert.Equal(HttpStatusCode.NoContent, logout.StatusCode);
            using (var revoked = await again.GetAsync("/api/v1/auth/whoami"))
                Assert.Equal(HttpStatusCode.Unauthorized, revoked.StatusCode);
        }

        private string Remember(string secret)
        {
            Secrets.Add(secret);
            return secret;
        }

        private static JsonContent Json<T>(T body) => JsonContent.Create(body, options: Problems.Json);
    }
}
