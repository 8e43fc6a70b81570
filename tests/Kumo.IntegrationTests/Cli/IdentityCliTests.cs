using System.Text.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Kumo.IntegrationTests.Vms;

namespace Kumo.IntegrationTests.Cli;

/// <summary>Two people on one real kumod through the real CLI: an admin, and alice with her own home directory and login.</summary>
[Trait("Category", "Slow")]
public sealed class IdentityCliTests(LocalKumo fixture) : IClassFixture<LocalKumo>
{
    private const string AlicePassword = "alice in kumoland";

    /// <summary>The admin: the environment's CLI user, who has pinned kumod's CA and uses the admin token.</summary>
    private Task<CliResult> Admin(params string[] args) => fixture.Env.CliAsync(args);

    /// <summary>alice: no KUMO_TOKEN, a HOME and XDG_CONFIG_HOME of her own, so her login lands in her config file.</summary>
    private Task<CliResult> Alice(string home, string? stdin, params string[] args) =>
        CliProcess.RunAsync(fixture.Env.Url, new Dictionary<string, string?>
        {
            ["HOME"] = home,
            ["XDG_CONFIG_HOME"] = Path.Combine(home, ".config"),
            ["KUMO_TOKEN"] = null,
            ["KUMO_PROJECT"] = null,
        }, stdin, args);

    private static void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}");

    [Fact]
    public async Task Alice_LogsIn_WorksInHerOwnProject_HitsHerQuota_AndLogsOut()
    {
        var home = Directory.CreateTempSubdirectory("kumo-it-alice-").FullName;
        try
        {
            Task<CliResult> AsAlice(string? stdin, params string[] args) => Alice(home, stdin, args);

            Ok(await Admin("vm", "create", "adminvm", "--memory", "128M", "--disk", "64M", "--stopped"));
            var added = await CliProcess.RunInAsync(fixture.Env.CliHome, fixture.Env.Url, new Dictionary<string, string?> { ["KUMO_TOKEN"] = fixture.Env.Token },
                AlicePassword + "\n", "user", "add", "alice", "--password-stdin");
            Ok(added);
            Assert.Equal("user alice created (role user)\n", added.Out);

            // alice pins kumod's CA in her own config first, as she would with the file from her administrator.
            Ok(await AsAlice(null, "config", "trust", "--ca", fixture.Env.CaPath));
            var login = await AsAlice(AlicePassword + "\n", "login", "--username", "alice", "--password-stdin");
            Ok(login);
            Assert.Equal("logged in as alice (user)\n", login.Out);
            var config = Path.Combine(home, ".config", "kumo", "config");
            Assert.StartsWith("token=kumo_", Assert.Single(await File.ReadAllLinesAsync(config)));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(config));

            var create = await AsAlice(null, "vm", "create", "a1", "--memory", "128M", "--disk", "64M");
            Ok(create);
            Assert.Contains("a1 is running", create.Out);
            var a1 = JsonSerializer.Deserialize<Instance>((await AsAlice(null, "vm", "show", "a1", "-o", "json")).Out, ApiClient.Json)!;
            Assert.Equal("alice", a1.Project);

            var list = await AsAlice(null, "vm", "list");
            Ok(list);
            Assert.Contains("a1", list.Out);
            Assert.DoesNotContain("adminvm", list.Out);
            var peek = await AsAlice(null, "vm", "show", "adminvm");
            Assert.Equal(1, peek.ExitCode);
            var adminView = await Admin("--project", "alice", "vm", "list");
            Assert.Contains("a1", adminView.Out);
            Assert.Contains("project: alice", adminView.Out);

            Ok(await Admin("quota", "set", "alice", "--vms", "1"));
            var second = await AsAlice(null, "vm", "create", "a2", "--memory", "128M", "--disk", "64M");
            Assert.True(second.ExitCode == 1, $"exit {second.ExitCode}\nstdout: {second.Out}\nstderr: {second.Err}");
            Assert.Contains("error: Quota exceeded", second.Err);
            Assert.Contains("vms: 1 VMs in use of 1 (user alice)", second.Err);
            Assert.Matches(@"(?m)^vms\s+1\s+1\s*$", (await AsAlice(null, "quota", "show")).Out);

            var logout = await AsAlice(null, "logout");
            Ok(logout);
            Assert.DoesNotContain("token=", await File.ReadAllTextAsync(config));
            var after = await AsAlice(null, "vm", "list");
            Assert.Equal(1, after.ExitCode);
            Assert.Equal("error: not logged in or the session expired; run kumo login\n", after.Err);

            Ok(await Admin("--project", "alice", "vm", "delete", "a1", "--force"));
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }
}
