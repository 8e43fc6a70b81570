using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Kumo.Bench;

/// <summary>
/// Live migration of a running tiny guest (256 MiB) between two nodes through kumod (`POST .../migrate` to the
/// operation's "succeeded") against QEMU's own `migrate` issued over QMP between two bare QEMUs with the same
/// kernel, initramfs, flags and migrate arguments (block migration of the qcow2 disk, as the agent asks). Runs
/// alternate; the Kumo guest goes back and forth between the nodes.
/// </summary>
internal static partial class MigrationBench
{
    public const string Name = "migration";

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        const string baseline = "QMP migrate (blk, inc) between two bare qemu-system-x86_64 on loopback, same kernel+initramfs+flags, 256 MiB guest";
        if (!Repo.HasQemu()) return new BenchResult(Name, baseline) { Skipped = "qemu-system-x86_64/qemu-img not installed (apt-get install qemu-system-x86 qemu-utils)" };
        var imageDir = await Repo.EnsureTinyImageAsync(ct);
        var image = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(imageDir, "image.json"), ct)).RootElement;
        var boot = new Boot(
            Path.Combine(imageDir, image.GetProperty("kernel").GetString()!),
            Path.Combine(imageDir, image.GetProperty("initrd").GetString()!),
            image.GetProperty("cmdline").GetString()!);

        var port = KumodProcess.FreePort();
        await using var kumod = await KumodProcess.StartAsync(Repo.ImagesDir, ct, "--migration-ports", $"{port}-{port}");
        await kumod.StartAgentAsync("bench2", Repo.ImagesDir, ct);
        await KumoClient.CreateAndWaitReadyAsync(kumod.Http, "mig", new { name = "mig", node = "bench" }, ct);

        var runs = Math.Clamp(options.Runs, 1, 5);
        var kumo = new List<Measured>();
        var bare = new List<Measured>();
        for (var i = 0; i < runs; i++)
        {
            bare.Add(await BareAsync(boot, ct));
            kumo.Add(await KumoAsync(kumod, i % 2 == 0 ? "bench2" : "bench", ct));
        }

        var result = new BenchResult(Name, baseline);
        result.Rows.Add(new($"migrate, request to done (median of {runs})", Stats.Median(kumo.Select(m => m.WallMs).ToList()), "ms",
            Stats.Median(bare.Select(m => m.WallMs).ToList())));
        result.Rows.Add(new("QEMU's total-time (median)", Stats.Median(kumo.Select(m => m.TotalMs).ToList()), "ms", Stats.Median(bare.Select(m => m.TotalMs).ToList())));
        result.Rows.Add(new("QEMU's downtime (median)", Stats.Median(kumo.Select(m => m.DowntimeMs).ToList()), "ms", Stats.Median(bare.Select(m => m.DowntimeMs).ToList())));
        result.Notes.Add("Kumo's request-to-done adds: the target agent starting its QEMU with -incoming, kumod telling the source, progress polling, and moving the instance to the target node in the database");
        result.Notes.Add($"per run, kumo (wall/total/downtime ms): {string.Join("; ", kumo.Select(F))}; bare: {string.Join("; ", bare.Select(F))}");
        result.Details["kumo"] = kumo;
        result.Details["bare"] = bare;
        return result;
    }

    /// <summary>One migration: client-observed wall time, and QEMU's own total-time and downtime.</summary>
    internal sealed record Measured(double WallMs, double TotalMs, double DowntimeMs);

    private sealed record Boot(string Kernel, string Initrd, string Cmdline);

    private static string F(Measured m) => string.Create(CultureInfo.InvariantCulture, $"{m.WallMs:0}/{m.TotalMs:0}/{m.DowntimeMs:0}");

    [GeneratedRegex(@"in (\d+) ms, (\d+) ms downtime")]
    private static partial Regex Reported();

    private static async Task<Measured> KumoAsync(KumodProcess kumod, string target, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        var events = await KumoClient.PostAndFollowAsync(kumod.Http, "/api/v1/instances/mig/migrate", new { node = target }, $"migrate to {target}", ct);
        var wall = KumoClient.Ms(start);
        var message = events[^1].Message ?? "";
        var m = Reported().Match(message);
        if (!m.Success) throw new InvalidOperationException($"the migration's last message does not report its times: {message}");
        return new Measured(wall, double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>Boots a bare source to readiness, starts a bare target with -incoming, and migrates with QMP as the agent does.</summary>
    private static async Task<Measured> BareAsync(Boot boot, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("kumo-bench-mig-").FullName;
        var started = new List<Process>();
        try
        {
            var src = Path.Combine(dir, "src");
            var dst = Path.Combine(dir, "dst");
            Directory.CreateDirectory(src);
            Directory.CreateDirectory(dst);
            var port = KumodProcess.FreePort();
            started.Add(await StartQemuAsync(src, boot, [], ct));
            await WaitReadyAsync(Path.Combine(src, "ready.sock"), started[0], ct);
            started.Add(await StartQemuAsync(dst, boot, ["-incoming", $"tcp:127.0.0.1:{port}"], ct));
            // QMP answers once QEMU's main loop runs, and by then the -incoming socket listens (a TCP probe would be taken as the migration).
            await using (var target = await Qmp.ConnectAsync(Path.Combine(dst, "qmp.sock"), ct)) await target.ExecuteAsync("query-status", null, ct);

            await using var qmp = await Qmp.ConnectAsync(Path.Combine(src, "qmp.sock"), ct);
            var begin = Stopwatch.GetTimestamp();
            await qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = $"tcp:127.0.0.1:{port}", ["blk"] = true, ["inc"] = true }, ct);
            while (true)
            {
                var info = (JsonObject)(await qmp.ExecuteAsync("query-migrate", null, ct))!;
                var status = info["status"]?.GetValue<string>();
                if (status == "completed")
                    return new Measured(KumoClient.Ms(begin), info["total-time"]!.GetValue<double>(), info["downtime"]!.GetValue<double>());
                if (status is "failed" or "cancelled") throw new InvalidOperationException($"bare migration {status}: {info.ToJsonString()}");
                await Task.Delay(10, ct);
            }
        }
        finally
        {
            foreach (var p in started)
            {
                if (!p.HasExited) p.Kill();
                await p.WaitForExitAsync(CancellationToken.None);
                p.Dispose();
            }
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<Process> StartQemuAsync(string dir, Boot boot, string[] extra, CancellationToken ct)
    {
        var disk = Path.Combine(dir, "disk.qcow2");
        using (var img = Process.Start(new ProcessStartInfo("qemu-img", ["create", "-q", "-f", "qcow2", disk, "1G"]) { UseShellExecute = false })!)
        {
            await img.WaitForExitAsync(ct);
            if (img.ExitCode != 0) throw new InvalidOperationException("qemu-img create failed");
        }
        var psi = new ProcessStartInfo("qemu-system-x86_64")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = dir,
        };
        foreach (var a in BootBench.QemuArgs(dir, disk, Path.Combine(dir, "ready.sock"), boot.Kernel, boot.Initrd, boot.Cmdline).Concat(extra))
            psi.ArgumentList.Add(a);
        var qemu = Process.Start(psi)!;
        qemu.ErrorDataReceived += (_, _) => { };
        qemu.OutputDataReceived += (_, _) => { };
        qemu.BeginErrorReadLine();
        qemu.BeginOutputReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!File.Exists(Path.Combine(dir, "qmp.sock")))
        {
            if (qemu.HasExited) throw new InvalidOperationException($"bare qemu exited with {qemu.ExitCode}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException("bare qemu: no QMP socket");
            await Task.Delay(10, ct);
        }
        return qemu;
    }

    private static async Task WaitReadyAsync(string socketPath, Process qemu, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(120));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        while (true)
        {
            if (qemu.HasExited) throw new InvalidOperationException("bare qemu exited before readiness");
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), timeout.Token);
                break;
            }
            catch (SocketException)
            {
                await Task.Delay(10, timeout.Token);
            }
        }
        await using var stream = new NetworkStream(socket);
        await stream.WriteAsync("ping\n"u8.ToArray(), timeout.Token);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        while (await reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (line.Trim() == "KUMO_READY") return;
        }
        throw new InvalidOperationException("bare qemu closed the readiness socket");
    }

    /// <summary>A minimal QMP client: greeting, qmp_capabilities, then one command at a time (events are skipped).</summary>
    private sealed class Qmp : IAsyncDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;
        private readonly StreamReader _reader;

        private Qmp(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket);
            _reader = new StreamReader(_stream, Encoding.UTF8);
        }

        public static async Task<Qmp> ConnectAsync(string path, CancellationToken ct)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
            var qmp = new Qmp(socket);
            await qmp._reader.ReadLineAsync(ct); // greeting
            await qmp.ExecuteAsync("qmp_capabilities", null, ct);
            return qmp;
        }

        public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, CancellationToken ct)
        {
            var request = new JsonObject { ["execute"] = command };
            if (arguments is not null) request["arguments"] = arguments;
            await _stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToJsonString() + "\n"), ct);
            while (await _reader.ReadLineAsync(ct) is { } line)
            {
                var reply = JsonNode.Parse(line)!.AsObject();
                if (reply.ContainsKey("event")) continue;
                if (reply["error"] is { } error) throw new InvalidOperationException($"QMP {command}: {error.ToJsonString()}");
                return reply["return"];
            }
            throw new InvalidOperationException($"QMP closed during {command}");
        }

        public async ValueTask DisposeAsync()
        {
            _reader.Dispose();
            await _stream.DisposeAsync();
            _socket.Dispose();
        }
    }
}
