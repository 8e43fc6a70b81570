using Kumo.Cli.Configuration;

namespace Kumo.Cli.Tests.Configuration;

public sealed class UrlResolutionTests
{
    [Theory]
    [InlineData(true, true, true, "http://flag:1/", nameof(UrlSource.Flag))]
    [InlineData(false, true, true, "http://env:2/", nameof(UrlSource.Environment))]
    [InlineData(false, false, true, "http://file:3/", nameof(UrlSource.ConfigFile))]
    [InlineData(false, false, false, "https://127.0.0.1:7400/", nameof(UrlSource.Default))]
    public void ResolveUrl_PrefersFlagThenEnvironmentThenConfigFileThenDefault(bool flag, bool env, bool file, string expected, string source)
    {
        using var dir = new TempDir();
        var config = dir.File("kumo", "config");
        if (file)
            CliConfig.Set(config, "url", "http://file:3");
        var environment = new CliEnvironment
        {
            Out = TextWriter.Null,
            Error = TextWriter.Null,
            GetVariable = name => env && name == "KUMO_URL" ? "http://env:2" : null,
            ConfigPath = config,
        };

        var resolved = CliConfig.ResolveUrl(flag ? "http://flag:1" : null, environment);

        Assert.Equal(new Uri(expected), resolved.Url);
        Assert.Equal(Enum.Parse<UrlSource>(source), resolved.Source);
    }

    [Fact]
    public async Task ConfigShow_ReportsTheEnvironmentOverTheConfigFile()
    {
        using var dir = new TempDir();
        var config = dir.File("kumo", "config");
        CliConfig.Set(config, "url", "http://file:3");

        var result = await CliRunner.RunAsync(["config", "show"], new Dictionary<string, string> { ["KUMO_URL"] = "http://env:2" }, config);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("url http://env:2 (from KUMO_URL)\n", result.Out);
    }

    [Fact]
    public async Task BadUrl_IsAUsageErrorNamingWhereItCameFrom()
    {
        var result = await CliRunner.RunAsync(["node", "list"], new Dictionary<string, string> { ["KUMO_URL"] = "ftp://x" });

        Assert.Equal(1, result.ExitCode);
        Assert.Equal(["error: KUMO_URL: 'ftp://x' is not an http(s) URL such as https://127.0.0.1:7400"], result.ErrLines);
    }

    [Fact]
    public async Task SetUrl_WritesAPrivateConfigFile_KeepingOtherSettings()
    {
        using var dir = new TempDir();
        var config = dir.File("kumo", "config");
        Directory.CreateDirectory(Path.GetDirectoryName(config)!);
        await File.WriteAllTextAsync(config, "# mine\nproject=demo\nurl=http://old:1\n");

        var result = await CliRunner.RunAsync(["config", "set-url", "10.0.0.5:7400"], configPath: config);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("# mine\nproject=demo\nurl=https://10.0.0.5:7400\n", await File.ReadAllTextAsync(config));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(config));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(config)!));
        }
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(config)!));
    }
}
