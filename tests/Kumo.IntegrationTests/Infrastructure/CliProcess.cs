using System.Diagnostics;

namespace Kumo.IntegrationTests.Infrastructure;

public sealed record CliResult(int ExitCode, string Out, string Err);

/// <summary>Runs the real `kumo` binary as a user would, with no stdin.</summary>
public static class CliProcess
{
    /// <summary>`kumo --url URL ARGS` for a user with no config at all (a fresh, empty home directory).</summary>
    public static async Task<CliResult> RunAsync(string url, params string[] args)
    {
        var home = Directory.CreateTempSubdirectory("kumo-cli-home-").FullName;
        try
        {
            return await RunInAsync(home, url, args);
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    /// <summary>`kumo --url URL ARGS` for a user whose home (and so ~/.config/kumo: config, pinned CAs) is <paramref name="home"/>.</summary>
    public static async Task<CliResult> RunInAsync(string home, string url, params string[] args)
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
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await p.WaitForExitAsync(cts.Token);
        return new CliResult(p.ExitCode, await stdout, await stderr);
    }
}
