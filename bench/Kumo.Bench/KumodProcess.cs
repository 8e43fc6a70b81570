using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;

namespace Kumo.Bench;

/// <summary>
/// One kumod --all-in-one (TCG) in a temporary state directory on free loopback ports. Disposing it kills kumod's
/// process tree and every QEMU started under the state directory (guests are daemonized, so they are not in the
/// tree), then removes the directory: nothing is left behind.
/// </summary>
internal sealed class KumodProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StreamWriter _log;

    private readonly List<Process> _agents = [];
    private readonly int _agentPort;

    private KumodProcess(Process process, string stateDir, Uri api, int proxyPort, int agentPort, StreamWriter log)
    {
        _process = process;
        _agentPort = agentPort;
        ProxyPort = proxyPort;
        StateDir = stateDir;
        _log = log;
        Http = new HttpClient(KumodTls.Handler(stateDir)) { BaseAddress = api, Timeout = TimeSpan.FromMinutes(2) };
    }

    public string StateDir { get; }

    /// <summary>kumod's reverse proxy for containers (plain HTTP on loopback).</summary>
    public int ProxyPort { get; }

    public int Pid => _process.Id;
    public HttpClient Http { get; }
    public string LogPath => Path.Combine(StateDir, "kumod.log");

    /// <summary>Starts kumod and waits until its local agent has registered the node.</summary>
    public static async Task<KumodProcess> StartAsync(string imagesDir, CancellationToken ct, params string[] extra)
    {
        var stateDir = Directory.CreateTempSubdirectory("kumo-bench-").FullName;
        var api = FreePort();
        var agent = FreePort();
        var proxy = FreePort();
        var exe = Path.Combine(AppContext.BaseDirectory, "kumod");
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[]
        {
            "--all-in-one", "--state-dir", stateDir, "--listen", $"127.0.0.1:{api}", "--agent-listen", $"127.0.0.1:{agent}",
            "--proxy-listen", $"127.0.0.1:{proxy}",
            "--node-name", "bench", "--images-dir", imagesDir, "--accel", "tcg",
        }.Concat(extra))
            psi.ArgumentList.Add(a);
        var log = new StreamWriter(Path.Combine(stateDir, "kumod.log")) { AutoFlush = true };
        var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {exe}");
        process.OutputDataReceived += (_, e) => Log(log, e.Data);
        process.ErrorDataReceived += (_, e) => Log(log, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var kumod = new KumodProcess(process, stateDir, new Uri($"https://127.0.0.1:{api}"), proxy, agent, log);
        try
        {
            await kumod.WaitNodeReadyAsync(TimeSpan.FromSeconds(60), ct);
            return kumod;
        }
        catch
        {
            await kumod.DisposeAsync();
            throw;
        }
    }

    private static void Log(StreamWriter log, string? line)
    {
        if (line is null) return;
        try
        {
            lock (log) log.WriteLine(line);
        }
        catch (ObjectDisposedException)
        {
            // Output after shutdown.
        }
    }

    private async Task WaitNodeReadyAsync(TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"kumod exited with {_process.ExitCode}: {Tail(LogPath)}");
            try
            {
                if (Http.DefaultRequestHeaders.Authorization is null)
                    await InProcessServer.LoginAsync(Http, StateDir, ct);
                var nodes = await Http.GetFromJsonAsync<JsonElement>("/api/v1/nodes", ct);
                if (nodes.EnumerateArray().Any(n => n.GetProperty("state").GetString() == "ready")) return;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            await Task.Delay(50, ct);
        }
        throw new TimeoutException($"kumod's agent did not register within {timeout.TotalSeconds:0}s: {Tail(LogPath)}");
    }

    /// <summary>
    /// Starts a second kumo-agent (node <paramref name="name"/>, state under this kumod's directory so disposal finds
    /// its guests) joined with a one-time token, and waits until its node is ready.
    /// </summary>
    public async Task StartAgentAsync(string name, string imagesDir, CancellationToken ct, params string[] extra)
    {
        using var tokenResponse = await Http.PostAsJsonAsync("/api/v1/nodes/tokens", new { }, ct);
        tokenResponse.EnsureSuccessStatusCode();
        var token = (await tokenResponse.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("token").GetString()!;
        // From its own build output: next to the bench, its runtimeconfig would miss the ASP.NET framework it needs.
        var configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var exe = Path.Combine(Repo.Root, "src", "Kumo.AgentHost", "bin", configuration, "net10.0", "kumo-agent");
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[]
        {
            "--server", $"https://127.0.0.1:{_agentPort}", "--node-name", name, "--state-dir", Path.Combine(StateDir, "agent-" + name),
            "--images-dir", imagesDir, "--accel", "tcg", "--join-token", token, "--ca", Path.Combine(StateDir, "pki", "ca.crt"),
        }.Concat(extra))
            psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start kumo-agent");
        _agents.Add(process);
        process.OutputDataReceived += (_, e) => Log(_log, e.Data is null ? null : $"[{name}] {e.Data}");
        process.ErrorDataReceived += (_, e) => Log(_log, e.Data is null ? null : $"[{name}] {e.Data}");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new InvalidOperationException($"kumo-agent {name} exited with {process.ExitCode}: {Tail(LogPath)}");
            var nodes = await Http.GetFromJsonAsync<JsonElement>("/api/v1/nodes", ct);
            if (nodes.EnumerateArray().Any(n => n.GetProperty("name").GetString() == name && n.GetProperty("state").GetString() == "ready")) return;
            await Task.Delay(50, ct);
        }
        throw new TimeoutException($"kumo-agent {name} did not register within 60 s: {Tail(LogPath)}");
    }

    /// <summary>PIDs from the pid files QEMU writes into the agent's instance directories.</summary>
    public IReadOnlyList<int> QemuPids()
    {
        var dir = Path.Combine(StateDir, "agent", "instances");
        if (!Directory.Exists(dir)) return [];
        var pids = new List<int>();
        foreach (var file in Directory.GetFiles(dir, "qemu.pid", SearchOption.AllDirectories))
        {
            try
            {
                if (int.TryParse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture, out var pid) && CommandLine(pid).Contains(StateDir, StringComparison.Ordinal))
                    pids.Add(pid);
            }
            catch (IOException)
            {
                // Deleted under us.
            }
        }
        return pids;
    }

    /// <summary>Resident set size of a process in bytes (VmRSS), or 0 if it is gone.</summary>
    public static long RssBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (!line.StartsWith("VmRSS:", StringComparison.Ordinal)) continue;
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (IOException)
        {
        }
        return 0;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _agents.Append(_process))
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
            }
        }
        // Guests: by pid file, and by command line for one whose pid file was not written yet.
        var ours = QemuPids().Concat(ProcessesMentioning(StateDir)).Distinct().ToList();
        foreach (var pid in ours) Kill(pid);
        foreach (var pid in ours)
        {
            for (var i = 0; i < 100 && Directory.Exists($"/proc/{pid}"); i++) await Task.Delay(20);
        }
        Http.Dispose();
        lock (_log) _log.Dispose();
        _process.Dispose();
        foreach (var p in _agents) p.Dispose();
        if (Environment.GetEnvironmentVariable("KUMO_BENCH_KEEP") != "1")
            Directory.Delete(StateDir, recursive: true);
    }

    /// <summary>Live processes whose command line contains <paramref name="marker"/> (a unique temp path).</summary>
    public static IEnumerable<int> ProcessesMentioning(string marker)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), CultureInfo.InvariantCulture, out var pid) || pid == Environment.ProcessId) continue;
            if (CommandLine(pid).Contains(marker, StringComparison.Ordinal)) yield return pid;
        }
    }

    public static void Kill(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            p.Kill();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Already gone.
        }
    }

    private static string CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static string Tail(string path)
    {
        try
        {
            return string.Join(" | ", File.ReadLines(path).TakeLast(5));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }
}
