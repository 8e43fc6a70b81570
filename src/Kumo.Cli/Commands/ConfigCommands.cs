using System.CommandLine;
using Kumo.Cli.Configuration;
using Kumo.Core.Security;

namespace Kumo.Cli.Commands;

/// <summary>kumo config set-url | show | trust: the per-user config file and the CAs pinned per server.</summary>
internal static class ConfigCommands
{
    public static Command Create(CliContext cli)
    {
        var config = new Command("config", "Settings kept in ~/.config/kumo/config");

        var url = new Argument<string>("URL") { Description = "kumod URL, e.g. https://10.0.0.5:7400" };
        var setUrl = new Command("set-url", "Remember which kumod to talk to") { url };
        cli.Examples(setUrl, "kumo config set-url https://10.0.0.5:7400", "kumo config set-url http://127.0.0.1:7400   # a kumod started with --insecure-http");
        cli.SetAction(setUrl, run =>
        {
            var parsed = CliConfig.ParseUrl(run.Get(url), "URL");
            CliConfig.Set(run.Environment.ConfigPath, "url", parsed.AbsoluteUri.TrimEnd('/'));
            run.Output.Write(new { url = parsed.AbsoluteUri.TrimEnd('/'), file = run.Environment.ConfigPath },
                r => Output.Line($"url {r.url} saved in {r.file}"));
            return Task.FromResult(KumoCli.Ok);
        });
        config.Subcommands.Add(setUrl);

        var show = new Command("show", "Show which kumod URL is used and where that choice came from");
        cli.Examples(show, "kumo config show");
        cli.SetAction(show, run =>
        {
            var resolved = run.ResolveUrl();
            var source = resolved.Source switch
            {
                UrlSource.Flag => "--url",
                UrlSource.Environment => CliConfig.UrlVariable,
                UrlSource.ConfigFile => run.Environment.ConfigPath,
                _ => "default",
            };
            string? ca = null;
            if (resolved.Url.Scheme == Uri.UriSchemeHttps)
            {
                using var pinned = TrustStore.Load(run.Environment, resolved.Url);
                ca = pinned is null ? "not pinned yet" : CertificateFingerprint.Of(pinned);
            }
            run.Output.Write(new { url = resolved.Url.AbsoluteUri.TrimEnd('/'), source, ca },
                r => Output.Line($"url {r.url} (from {r.source})" + (r.ca is null ? "" : $"\nca  {r.ca}")));
            return Task.FromResult(KumoCli.Ok);
        });
        config.Subcommands.Add(show);

        var fingerprint = new Option<string>("--fingerprint") { Description = "Trust the server's CA if it has this SHA-256 fingerprint", HelpName = "SHA256" };
        var caFile = new Option<string>("--ca") { Description = "Pin this CA certificate (PEM) without asking the server, e.g. kumod's STATE/pki/ca.crt", HelpName = "FILE" };
        var trust = new Command("trust", "Pin the CA of the kumod at --url (or the configured URL); replaces an earlier pin")
        {
            fingerprint,
            caFile,
        };
        cli.Examples(trust,
            "kumo config trust                                  # shows the fingerprint and asks",
            "kumo config trust --fingerprint 3f9a...c2          # for scripts: trust only this CA",
            "kumo --url https://127.0.0.1:7400 config trust --ca /var/lib/kumo/pki/ca.crt");
        cli.SetAction(trust, async run =>
        {
            var server = run.ResolveUrl().Url;
            if (server.Scheme != Uri.UriSchemeHttps)
                throw new UsageException($"{server} is plain http: there is no CA to trust (kumod serves https unless started with --insecure-http)");
            var file = run.Get(caFile);
            if (file is not null && run.Get(fingerprint) is not null)
                throw new UsageException("--ca and --fingerprint are alternatives: give one");
            RequireFile(file);
            string pinned;
            if (file is not null)
            {
                using var ca = CaTrust.LoadPem(file);
                TrustStore.Save(run.Environment, server, ca);
                pinned = CertificateFingerprint.Of(ca);
            }
            else
            {
                using var ca = await TrustOnFirstUse.TrustAsync(server, run.Environment, run.Get(fingerprint) ?? run.AcceptFingerprint, run.Cancellation);
                pinned = CertificateFingerprint.Of(ca);
            }
            run.Output.Write(new { url = TrustOnFirstUse.Show(server), ca = pinned, file = TrustStore.PathFor(run.Environment, server) },
                r => Output.Line($"pinned CA {r.ca} for {r.url} ({r.file})"));
            return KumoCli.Ok;
        });
        config.Subcommands.Add(trust);

        return config;
    }

    private static void RequireFile(string? file)
    {
        if (file is not null && !File.Exists(file))
            throw new UsageException($"--ca: {file} does not exist");
    }
}
