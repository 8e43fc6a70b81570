using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>A real kumod or kumo-agent process with its output captured for failure messages.</summary>
public sealed class DaemonProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private DaemonProcess(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>Waits for the process to end by itself; false at the deadline.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public string Log
    {
        get
        {
            lock (_log) return _log.ToString();
        }
    }

    /// <summary>Starts `dotnet DLL ARGS`, inside network namespace <paramref name="netns"/> when given (ip netns exec execs, so the pid is dotnet's).</summary>
    public static DaemonProcess Start(string dll, IEnumerable<string> args, string? netns = null)
    {
        var psi = new ProcessStartInfo(netns is null ? "dotnet" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (netns is not null)
        {
            foreach (var a in new[] { "netns", "exec", netns, "dotnet" }) psi.ArgumentList.Add(a);
        }
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["KUMO_SCRIPTS_DIR"] = Path.Combine(Repo.Root, "scripts");
        var p = new Process { StartInfo = psi };
        var d = new DaemonProcess(p);
        p.OutputDataReceived += (_, e) => d.Append(e.Data);
        p.ErrorDataReceived += (_, e) => d.Append(e.Data);
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return d;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_log) _log.AppendLine(line);
    }

    /// <summary>SIGKILL: the crash the tests simulate. Guests (daemonized QEMU) are not in this process tree.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    /// <summary>kill -9 of this process alone, exactly what a crash of kumod or the agent looks like.</summary>
    public void Crash()
    {
        if (_process.HasExited) return;
        _ = Kill(_process.Id, 9);
        _process.WaitForExit(10_000);
    }

    /// <summary>SIGTERM and wait for a clean exit.</summary>
    public bool Stop(TimeSpan timeout)
    {
        if (_process.HasExited) return true;
        _ = Kill(_process.Id, 15);
        return _process.WaitForExit(timeout);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    /// <summary>
    /// Distinct free ports: every listener stays open until all are picked, because a port released by one
    /// <see cref="FreePort"/> call can be handed out again by the next (kumod then fails with "address already in use").
    /// </summary>
    public static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        try
        {
            listeners.ForEach(l => l.Start());
            return listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        }
        finally
        {
            listeners.ForEach(l => l.Dispose());
        }
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
