using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo token list | create | revoke: API tokens for scripts, separate from the login session.</summary>
internal static class TokenCommands
{
    public static Command Create(CliContext cli)
    {
        var token = new Command("token", "API tokens for scripts (use one as KUMO_TOKEN)");

        var list = new Command("list", "List your tokens that are not revoked (the login session included)");
        cli.Examples(list, "kumo token list");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListTokensAsync(run.Cancellation), run.Output.Tokens);
            return KumoCli.Ok;
        });
        token.Subcommands.Add(list);

        var name = new Option<string?>("--name") { Description = "What the token is for", HelpName = "NAME" };
        var ttl = new Option<string?>("--ttl") { Description = "Lifetime: 90s, 15m, 12h, 30d or 2w (default: until revoked)", HelpName = "DURATION" };
        var metrics = new Option<bool>("--metrics") { Description = "A scrape-only token: GET /metrics and nothing else (for Prometheus)" };
        var create = new Command("create", "Create an API token; its secret is printed once") { name, ttl, metrics };
        cli.Examples(create, "kumo token create --name ci --ttl 30d", "KUMO_TOKEN=$(kumo token create --name ci -o json | jq -r .secret)",
            "kumo token create --metrics --name prometheus   # bearer_token for a scrape of https://HOST:7400/metrics");
        cli.SetAction(create, async run =>
        {
            var post = new TokensPost { Name = run.Get(name), Ttl = run.Get(ttl)?.Trim(), Metrics = run.Get(metrics) ? true : null };
            var created = await run.Client.CreateTokenAsync(post, run.Cancellation);
            run.Output.Write(created, t => Output.Secret(
                $"{(t.Kind == TokenKinds.Metrics ? "metrics token" : "token")} {t.Id}{(t.Name is null ? "" : $" ({t.Name})")} created, expires {(t.ExpiresAt is null ? "never" : Output.Time(t.ExpiresAt))}",
                "secret", t.Secret ?? "-"));
            return KumoCli.Ok;
        });
        token.Subcommands.Add(create);

        var id = new Argument<string>("ID") { Description = "Token id (see kumo token list)" };
        var revoke = new Command("revoke", "Revoke a token at once") { id };
        cli.Examples(revoke, "kumo token revoke 01jbz3k4m5n6p7q8r9s0t1v2w3");
        cli.SetAction(revoke, async run =>
        {
            var tokenId = run.Get(id).Trim();
            if (tokenId.Length == 0)
                throw new UsageException("token id must not be empty");
            await run.Client.RevokeTokenAsync(tokenId, run.Cancellation);
            run.Output.Write(new { id = tokenId, revoked = true }, r => Output.Line($"token {r.id} revoked"));
            return KumoCli.Ok;
        });
        token.Subcommands.Add(revoke);

        return token;
    }
}
