using System.Collections.Concurrent;
using Kumo.Core;
using Kumo.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using static Kumo.Cli.Tests.Commands.IdentityFakes;

namespace Kumo.Cli.Tests.Commands;

public sealed class AuthCommandTests
{
    private static Task<FakeKumod> StartLoginAsync(Action<LoginRequest>? onLogin = null, Action<WebApplication>? more = null) =>
        FakeKumod.StartAsync(app =>
        {
            app.MapPost("/api/v1/auth/login", (LoginRequest body) =>
            {
                onLogin?.Invoke(body);
                return body.Password == "right-password"
                    ? FakeKumod.Ok(new LoginResponse { Token = "kumo_new", ExpiresAt = DateTimeOffset.UtcNow.AddHours(12), User = User(body.Username!) })
                    : FakeKumod.Problem(401, ProblemTypes.Unauthorized, "Login failed", "wrong username or password, or the account is disabled");
            });
            more?.Invoke(app);
        });

    [Fact]
    public async Task Login_WithPasswordStdin_StoresTheTokenInAPrivateConfig_KeepingOtherSettings()
    {
        using var dir = new TempDir();
        LoginRequest? sent = null;
        await using var kumod = await StartLoginAsync(body => sent = body);
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "token=kumo_old");

        var result = await CliRunner.RunAsync(["login", "--username", "alice", "--password-stdin"], configPath: config, stdin: "right-password\n");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("logged in as alice (user)\n", result.Out);
        Assert.Equal(new LoginRequest { Username = "alice", Password = "right-password" }, sent);
        Assert.Equal(["url=" + kumod.Url.ToString().TrimEnd('/'), "token=kumo_new"], await File.ReadAllLinesAsync(config));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(config));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(config)!));
        Assert.DoesNotContain("right-password", result.Out + result.Err);
    }

    [Fact]
    public async Task Login_InAFreshHome_CreatesThePrivateConfigDirectory()
    {
        using var dir = new TempDir();
        await using var kumod = await StartLoginAsync();
        var config = dir.File("home", ".config", "kumo", "config");

        var result = await CliRunner.RunAsync(["--url", kumod.Url.ToString(), "login", "-u", "alice", "--password-stdin"], configPath: config, stdin: "right-password");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(["token=kumo_new"], await File.ReadAllLinesAsync(config));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(config));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(config)!));
    }

    [Fact]
    public async Task Login_OnATerminal_AsksForTheNameAndThePasswordWithoutEcho()
    {
        using var dir = new TempDir();
        await using var kumod = await StartLoginAsync();
        var config = Config(dir);
        var secretPrompts = new List<string>();
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var environment = new CliEnvironment
        {
            Out = stdout,
            Error = stderr,
            In = new StringReader("alice\n"),
            IsInputTerminal = true,
            ReadSecret = prompt =>
            {
                secretPrompts.Add(prompt);
                return "right-password";
            },
            GetVariable = _ => null,
            ConfigPath = config,
        };

        var code = await KumoCli.RunAsync(["--url", kumod.Url.ToString(), "login"], environment);

        Assert.Equal(0, code);
        Assert.Equal("Username: ", stderr.ToString());
        Assert.Equal(["Password: "], secretPrompts);
        Assert.Equal("logged in as alice (user)\n", stdout.ToString());
    }

    [Fact]
    public async Task Login_WithoutATerminalOrPasswordStdin_RefusesWithoutAsking()
    {
        await using var kumod = await StartLoginAsync();

        var result = await CliRunner.RunAsync(kumod.Url, "login", "--username", "alice");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: stdin is not a terminal, so there is no one to ask; from a script use --username NAME --password-stdin"], result.ErrLines);
        Assert.Empty(kumod.Requests);
    }

    [Fact]
    public async Task Login_WithAWrongPassword_SaysSo_AndStoresNothing()
    {
        using var dir = new TempDir();
        await using var kumod = await StartLoginAsync();
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'));

        var result = await CliRunner.RunAsync(["login", "-u", "alice", "--password-stdin"], configPath: config, stdin: "wrong\n");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: wrong username or password, or the account is disabled"], result.ErrLines);
        Assert.DoesNotContain("token=", await File.ReadAllTextAsync(config));
    }

    [Fact]
    public async Task Login_TooManyAttempts_ShowsHowLongToWait()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/auth/login", (HttpContext context) =>
        {
            context.Response.Headers.RetryAfter = "240";
            return FakeKumod.Problem(429, ProblemTypes.TooManyAttempts, "Too many failed logins", "too many failed logins for this account or address");
        }));

        var result = await CliRunner.RunAsync(["--url", kumod.Url.ToString(), "login", "-u", "alice", "--password-stdin"], stdin: "guess\n");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: too many failed logins for this account or address (try again in 240 s)"], result.ErrLines);
    }

    [Fact]
    public async Task Logout_RevokesTheTokenOnKumod_AndRemovesItFromTheConfig()
    {
        using var dir = new TempDir();
        ConcurrentDictionary<string, string>? seen = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            seen = RecordAuthorization(app);
            app.MapPost("/api/v1/auth/logout", () => Results.NoContent());
        });
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "token=kumo_mine", "project=lab1");

        var result = await CliRunner.RunAsync(["logout"], configPath: config);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("logged out\n", result.Out);
        Assert.Equal("Bearer kumo_mine", seen!["POST /api/v1/auth/logout"]);
        Assert.Equal(["url=" + kumod.Url.ToString().TrimEnd('/'), "project=lab1"], await File.ReadAllLinesAsync(config));
    }

    [Fact]
    public async Task Logout_WhenTheSessionHadAlreadyExpired_StillRemovesTheToken()
    {
        using var dir = new TempDir();
        await using var kumod = await FakeKumod.StartAsync(app => app.MapPost("/api/v1/auth/logout", () =>
            FakeKumod.Problem(401, ProblemTypes.Unauthorized, "Not authenticated", "the token is unknown, expired or revoked")));
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "token=kumo_expired");

        var result = await CliRunner.RunAsync(["logout"], configPath: config);

        Assert.Equal(0, result.ExitCode);
        Assert.DoesNotContain("token=", await File.ReadAllTextAsync(config));
    }

    [Fact]
    public async Task Unauthorized_TellsToRunKumoLogin_AndExits1()
    {
        await using var kumod = await FakeKumod.StartAsync(app => app.MapGet("/api/v1/instances", () =>
            FakeKumod.Problem(401, ProblemTypes.Unauthorized, "Not authenticated", "the token is unknown, expired or revoked; log in again (kumo login)")));

        var result = await CliRunner.RunAsync(kumod.Url, "vm", "list");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: not logged in or the session expired; run kumo login"], result.ErrLines);
        Assert.Equal("", result.Out);
    }

    [Fact]
    public async Task TokenVariable_IsSentInsteadOfTheStoredToken()
    {
        using var dir = new TempDir();
        ConcurrentDictionary<string, string>? seen = null;
        await using var kumod = await FakeKumod.StartAsync(app =>
        {
            seen = RecordAuthorization(app);
            app.MapGet("/api/v1/auth/whoami", () => FakeKumod.Ok(User()));
        });
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "token=kumo_file");

        var result = await CliRunner.RunAsync(["whoami"], new Dictionary<string, string> { ["KUMO_TOKEN"] = "kumo_env" }, config);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("Bearer kumo_env", seen!["GET /api/v1/auth/whoami"]);
        Assert.Matches(@"(?m)^Name:\s+alice\s*$", result.Out);
        Assert.Matches(@"(?m)^Acting in:\s+alice \(personal project\)\s*$", result.Out);
    }

    [Fact]
    public async Task Passwd_FromStdin_ChangesThePassword_AndLogsInAgainWithTheNewOne()
    {
        using var dir = new TempDir();
        PasswordChange? change = null;
        LoginRequest? relogin = null;
        await using var kumod = await StartLoginAsync(body => relogin = body, app =>
        {
            app.MapGet("/api/v1/auth/whoami", () => FakeKumod.Ok(User()));
            app.MapPost("/api/v1/auth/password", (PasswordChange body) =>
            {
                change = body;
                return Results.NoContent();
            });
        });
        var config = Config(dir, "url=" + kumod.Url.ToString().TrimEnd('/'), "token=kumo_old");

        var result = await CliRunner.RunAsync(["passwd", "--current-stdin"], configPath: config, stdin: "old-password\nright-password\n");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("password of alice changed; other sessions ended\n", result.Out);
        Assert.Equal(new PasswordChange { Current = "old-password", New = "right-password" }, change);
        Assert.Equal(new LoginRequest { Username = "alice", Password = "right-password" }, relogin);
        Assert.Contains("token=kumo_new", await File.ReadAllLinesAsync(config));
    }

    [Fact]
    public async Task Passwd_WithoutATerminalOrCurrentStdin_RefusesWithoutAsking()
    {
        await using var kumod = await FakeKumod.StartAsync(_ => { });

        var result = await CliRunner.RunAsync(kumod.Url, "passwd");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("--current-stdin", Assert.Single(result.ErrLines));
        Assert.Empty(kumod.Requests);
    }
}
