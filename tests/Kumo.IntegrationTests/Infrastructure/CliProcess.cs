using System.Diagnostics;

namespace Kumo.IntegrationTests.Infrastructure;

public sealed record CliResult(int ExitCode, string Out, string Err);

/// <summary>Runs the real `kumo` binary as a user would, with no terminal.</summary>
public static class CliProcess
{
    /// <summary>Bearer token handed to CLI runs (KUMO_TOKEN) that do not say otherwise.</summary>
    public static string? Token { get; set; }

    /// <summary>`kumo --url URL ARGS` for a user with no config at all (a fresh, empty home directory).</summary>
    public static Task<CliResult> RunAsync(string url, params string[] args) =>
        RunAsync(url, new Dictionary<string, string?>(), null, args);

    /// <summary>
    /// As <see cref="RunAsync(string, string[])"/>, with extra environment variables (a null value removes one) and
    /// <paramref name="stdin"/> as its input.
    /// </summary>
    public static async Task<CliResult> RunAsync(string url, IReadOnlyDictionary<string, string?> environment, string? stdin, params string[] args)
    {
        var home = Directory.CreateTempSubdirectory("kumo-cli-home-").FullName;
        try
        {
            return await RunInAsync(home, url, environment, stdin, args);
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    /// <summary>`kumo --url URL ARGS` for a user whose home (and so ~/.config/kumo: config, pinned CAs) is <paramref name="home"/>.</summary>
    public static Task<CliResult> RunInAsync(string home, string url, params string[] args) =>
        RunInAsync(home, url, new Dictionary<string, string?>(), null, args);

    public static async Task<CliResult> RunInAsync(string home, string url, IReadOnlyDictionary<string, string?> environment, string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Repo.CliDll);
        psi.ArgumentList.Add("--url");
        psi.ArgumentList.Add(url);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["CI"] = "true";
        psi.Environment["HOME"] = home;
        psi.Environment.Remove("KUMO_URL");
        psi.Environment.Remove("XDG_CONFIG_HOME");
        psi.Environment.Remove("KUMO_TOKEN");
        if (Token is not null) psi.Environment["KUMO_TOKEN"] = Token;
        foreach (var (name, value) in environment)
        {
            if (value is null) psi.Environment.Remove(name);
            else psi.Environment[name] = value;
        }
        using var p = Process.Start(psi)!;
        if (stdin is not null) await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await p.WaitForExitAsync(cts.Token);
        return new CliResult(p.ExitCode, await stdout, await stderr);
    }
}
