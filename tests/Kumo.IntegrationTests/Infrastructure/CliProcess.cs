using System.Diagnostics;

namespace Kumo.IntegrationTests.Infrastructure;

public sealed record CliResult(int ExitCode, string Out, string Err);

/// <summary>Runs the real `kumo` binary as a user would, with no stdin.</summary>
public static class CliProcess
{
    /// <summary>Bearer token handed to every CLI run (KUMO_TOKEN), set once the environment has logged in.</summary>
    public static string? Token { get; set; }

    public static Task<CliResult> RunAsync(string url, params string[] args) =>
        RunAsync(url, Token is null ? new Dictionary<string, string?>() : new() { ["KUMO_TOKEN"] = Token }, null, args);

    /// <summary>
    /// Runs `kumo` with extra environment variables (a null value removes one the test process has) and
    /// <paramref name="stdin"/> as its input.
    /// </summary>
    public static async Task<CliResult> RunAsync(string url, IReadOnlyDictionary<string, string?> environment, string? stdin, params string[] args)
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
        psi.Environment.Remove("KUMO_TOKEN");
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
