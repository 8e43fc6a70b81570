using System.CommandLine;
using Kumo.Cli.Configuration;

namespace Kumo.Cli.Commands;

/// <summary>kumo config set-url | show: the per-user config file.</summary>
internal static class ConfigCommands
{
    public static Command Create(CliContext cli)
    {
        var config = new Command("config", "Settings kept in ~/.config/kumo/config");

        var url = new Argument<string>("URL") { Description = "kumod URL, e.g. http://10.0.0.5:7400" };
        var setUrl = new Command("set-url", "Remember which kumod to talk to") { url };
        cli.Examples(setUrl, "kumo config set-url http://10.0.0.5:7400");
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
            run.Output.Write(new { url = resolved.Url.AbsoluteUri.TrimEnd('/'), source }, r => Output.Line($"url {r.url} (from {r.source})"));
            return Task.FromResult(KumoCli.Ok);
        });
        config.Subcommands.Add(show);

        return config;
    }
}
