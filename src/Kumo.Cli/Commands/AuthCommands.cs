using System.CommandLine;
using Kumo.Cli.Configuration;
using Kumo.Client;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo login | logout | whoami | passwd: the session this CLI keeps as token= in its config file.</summary>
internal static class AuthCommands
{
    public static IEnumerable<Command> Create(CliContext cli)
    {
        yield return Login(cli);
        yield return Logout(cli);
        yield return WhoAmI(cli);
        yield return Passwd(cli);
    }

    private static Command Login(CliContext cli)
    {
        var username = new Option<string?>("--username", "-u") { Description = "User name (asked for when stdin is a terminal)", HelpName = "NAME" };
        var passwordStdin = new Option<bool>("--password-stdin") { Description = "Read the password from the first line of stdin (for scripts)" };
        var login = new Command("login", "Log in and keep the session token in ~/.config/kumo/config (mode 0600)")
        {
            username, passwordStdin,
        };
        cli.Examples(login,
            "kumo login",
            "kumo login --username alice",
            "printf '%s\\n' \"$PASSWORD\" | kumo login --username alice --password-stdin");
        cli.SetAction(login, async run =>
        {
            var env = run.Environment;
            var name = run.Get(username);
            string password;
            if (run.Get(passwordStdin))
            {
                if (name is null)
                    throw new UsageException("--password-stdin needs --username NAME");
                password = Terminal.ReadLine(env, "the password");
            }
            else if (env.IsInputTerminal)
            {
                name ??= Terminal.Ask(env, "Username: ");
                password = Terminal.AskSecret(env, "Password: ");
            }
            else
            {
                throw Terminal.NoTerminal("--username NAME --password-stdin");
            }
            var session = await LogInAsync(run, Check.Name(name, "username"), password);
            if (session is null)
                return KumoCli.Failed;
            run.Output.Write(new { user = session.User.Name, role = session.User.Role, session.ExpiresAt, config = env.ConfigPath },
                r => Output.Line($"logged in as {r.user} ({r.role})"));
            WarnIfTokenVariableWins(run);
            return KumoCli.Ok;
        });
        return login;
    }

    /// <summary>Logs in and stores the token; null (after printing why) when kumod refused the credentials.</summary>
    public static async Task<LoginResponse?> LogInAsync(Invocation run, string name, string password)
    {
        LoginResponse session;
        try
        {
            session = await run.Client.LoginAsync(name, password, run.Cancellation);
        }
        catch (KumoApiException e) when (e.Problem?.Status == 401)
        {
            // Here a 401 means wrong credentials, not an expired session: say what kumod said.
            run.Output.Error(e.Message);
            return null;
        }
        CliConfig.Set(run.Environment.ConfigPath, "token", session.Token);
        run.Client.Token = session.Token;
        return session;
    }

    private static Command Logout(CliContext cli)
    {
        var logout = new Command("logout", "End the session: revoke its token on kumod and remove it from the config file");
        cli.Examples(logout, "kumo logout");
        cli.SetAction(logout, async run =>
        {
            if (CliConfig.ResolveToken(run.Environment) is null)
            {
                run.Output.Write(new { loggedOut = false }, _ => Output.Line("not logged in"));
                return KumoCli.Ok;
            }
            KumoApiException? failure = null;
            try
            {
                await run.Client.LogoutAsync(run.Cancellation);
            }
            catch (KumoApiException e) when (e.Problem?.Status == 401)
            {
                // Already expired or revoked: nothing left to revoke.
            }
            catch (KumoApiException e)
            {
                failure = e;
            }
            // Forget it here either way: the person asked this CLI to stop using it.
            CliConfig.Remove(run.Environment.ConfigPath, "token");
            if (failure is not null)
            {
                run.Output.Error($"the token was removed here but kumod did not revoke it: {failure.Message}");
                return failure.IsUnreachable ? KumoCli.Unreachable : KumoCli.Failed;
            }
            run.Output.Write(new { loggedOut = true }, _ => Output.Line("logged out"));
            WarnIfTokenVariableWins(run);
            return KumoCli.Ok;
        });
        return logout;
    }

    private static Command WhoAmI(CliContext cli)
    {
        var whoami = new Command("whoami", "Show who this CLI is logged in as, and the project it acts in");
        cli.Examples(whoami, "kumo whoami", "kumo whoami -o json");
        cli.SetAction(whoami, async run =>
        {
            var me = await run.Client.WhoAmIAsync(run.Cancellation);
            var project = run.Project;
            run.Output.Write(me, u => Output.Details(
                ("Name", u.Name),
                ("Role", u.Role),
                ("Source", u.Source),
                ("Projects", string.Join(", ", u.Projects)),
                ("Acting in", project ?? $"{u.Name} (personal project)")));
            return KumoCli.Ok;
        });
        return whoami;
    }

    private static Command Passwd(CliContext cli)
    {
        var currentStdin = new Option<bool>("--current-stdin")
        {
            Description = "Read two lines from stdin: the current password, then the new one (for scripts)",
        };
        var passwd = new Command("passwd", "Change your password (ends your other sessions; this CLI logs in again)") { currentStdin };
        cli.Examples(passwd, "kumo passwd", "printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | kumo passwd --current-stdin");
        cli.SetAction(passwd, async run =>
        {
            var env = run.Environment;
            string current, next;
            if (run.Get(currentStdin))
            {
                current = Terminal.ReadLine(env, "the current password (line 1)");
                next = Terminal.ReadLine(env, "the new password (line 2)");
            }
            else if (env.IsInputTerminal)
            {
                current = Terminal.AskSecret(env, "Current password: ");
                next = Terminal.AskSecret(env, "New password: ");
                if (Terminal.AskSecret(env, "New password again: ") != next)
                    throw new UsageException("the two new passwords differ; nothing changed");
            }
            else
            {
                throw Terminal.NoTerminal("--current-stdin (two lines: current password, new password)");
            }
            var me = await run.Client.WhoAmIAsync(run.Cancellation);
            await run.Client.ChangePasswordAsync(current, next, run.Cancellation);
            // kumod ended every session of this user, this one included; a stored session is renewed at once.
            var relogged = string.IsNullOrWhiteSpace(env.GetVariable(CliConfig.TokenVariable)) && await LogInAsync(run, me.Name, next) is not null;
            run.Output.Write(new { user = me.Name, passwordChanged = true, loggedIn = relogged },
                r => Output.Line($"password of {r.user} changed; other sessions ended" + (r.loggedIn ? "" : "; log in again: kumo login")));
            return KumoCli.Ok;
        });
        return passwd;
    }

    private static void WarnIfTokenVariableWins(Invocation run)
    {
        if (!string.IsNullOrWhiteSpace(run.Environment.GetVariable(CliConfig.TokenVariable)))
            run.Environment.Error.WriteLine($"note: {CliConfig.TokenVariable} is set and is used instead of the stored token");
    }
}
