using System.Diagnostics;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>Paths of the repository and the binaries the tests start for real.</summary>
public static class Repo
{
    public static readonly string Root = FindRoot();

    public static string Configuration =>
        new DirectoryInfo(AppContext.BaseDirectory).Parent?.Name ?? "Debug";

    public static string KumodDll => Binary("Kumo.Daemon", "kumod.dll");
    public static string AgentDll => Binary("Kumo.AgentHost", "kumo-agent.dll");
    public static string CliDll => Binary("Kumo.Cli", "kumo.dll");

    private static string Binary(string project, string dll)
    {
        var tfm = new DirectoryInfo(AppContext.BaseDirectory).Name;
        var config = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        return Path.Combine(Root, "src", project, "bin", config, tfm, dll);
    }

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Kumo.slnx"))) return d.FullName;
        }
        throw new InvalidOperationException("cannot find the repository root (Kumo.slnx) above " + AppContext.BaseDirectory);
    }

    /// <summary>Runs a tool and returns its stdout; a non-zero exit fails with its stderr.</summary>
    public static async Task<string> RunAsync(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed: {await stderr}");
        return stdout;
    }

    /// <summary>Live qemu processes whose command line mentions <paramref name="marker"/> (a test's state dir).</summary>
    public static List<int> QemuPids(string marker)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                if (stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z')) continue;
                var cmd = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                // The agent runs "qemu-system-..."; libvirtd runs it by its full path.
                var program = Path.GetFileName(cmd.Split(' ', 2)[0]);
                if (program.StartsWith("qemu-system", StringComparison.Ordinal) && cmd.Contains(marker, StringComparison.Ordinal)) pids.Add(pid);
            }
            catch (IOException)
            {
            }
        }
        return pids;
    }

    public static void KillQemu(string marker)
    {
        foreach (var pid in QemuPids(marker))
        {
            try
            {
                Process.GetProcessById(pid).Kill();
            }
            catch (ArgumentException)
            {
            }
        }
    }
}
