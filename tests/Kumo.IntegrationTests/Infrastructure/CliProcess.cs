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

    /// <summary>`dotnet kumo.dll --url URL ARGS` with all three streams piped and only the test's own settings in its environment.</summary>
    internal static ProcessStartInfo StartInfo(string home, string url, string? token, IEnumerable<string> args)
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
        if (token is null) psi.Environment.Remove("KUMO_TOKEN");
        else psi.Environment["KUMO_TOKEN"] = token;
        return psi;
    }

    public static async Task<CliResult> RunInAsync(string home, string url, IReadOnlyDictionary<string, string?> environment, string? stdin, params string[] args)
    {
        var psi = StartInfo(home, url, Token, args);
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

/// <summary>The real `kumo` with stdin and stdout as pipes the test writes and reads while it runs (kumo vm console).</summary>
public sealed class InteractiveCli : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _out = new();
    private readonly System.Text.StringBuilder _err = new();
    private readonly SemaphoreSlim _changed = new(0);

    public InteractiveCli(string home, string url, string? token, params string[] args)
    {
        var psi = CliProcess.StartInfo(home, url, token, args);
        _process = Process.Start(psi)!;
        _ = PumpAsync(_process.StandardOutput, _out);
        _ = PumpAsync(_process.StandardError, _err);
    }

    public string Out
    {
        get
        {
            lock (_out) return _out.ToString();
        }
    }

    public string Err
    {
        get
        {
            lock (_out) return _err.ToString();
        }
    }

    public async Task WriteAsync(string text)
    {
        await _process.StandardInput.WriteAsync(text);
        await _process.StandardInput.FlushAsync();
    }

    /// <summary>Waits until stdout matches; returns the match.</summary>
    public async Task<System.Text.RegularExpressions.Match> WaitForAsync(System.Text.RegularExpressions.Regex pattern, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (pattern.Match(Out) is { Success: true } m) return m;
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || _process.HasExited && pattern.Match(Out) is { Success: false })
                throw new TimeoutException($"kumo output never matched {pattern}\nstdout: {Out}\nstderr: {Err}");
            await _changed.WaitAsync(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1));
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    private async Task PumpAsync(StreamReader reader, System.Text.StringBuilder into)
    {
        var buffer = new char[4096];
        int n;
        while ((n = await reader.ReadAsync(buffer)) > 0)
        {
            lock (_out) into.Append(buffer, 0, n);
            _changed.Release();
        }
        _changed.Release();
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
