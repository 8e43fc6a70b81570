using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Kumo.Bench;

/// <summary>
/// Guest-to-guest TCP throughput on a Kumo tenant network (two TCG guests on one node: tap, Kumo bridge, tap, with
/// the agent's nftables rules in the path) against two plain network namespaces joined by a bare Linux bridge, in
/// the same run. Both sides run the same shell lines: `dd if=/dev/zero | nc` into `nc -l | wc -c` with busybox's nc
/// (the tiny guest has no iperf3; on the host dd and wc are coreutils'), timed by the sender from /proc/uptime and
/// counted by the receiver, which must see every byte.
/// </summary>
internal static class NetworkBench
{
    public const string Name = "network";

    private const string GuestSubnet = "10.77.9.0/24";
    private const string BareSubnetPrefix = "10.77.8.";
    private const int Port = 5001;
    private const int BlockBytes = 65536;
    private const int GuestBlocks = 256;      // 16 MiB per guest run (TCG guests move a few MB/s to tens of MB/s)
    private const int BareBlocks = 4096;      // 256 MiB per bare run

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        const string baseline = "two network namespaces joined by a bare Linux bridge (veths), same busybox dd|nc stream";
        if (!Repo.HasQemu()) return new BenchResult(Name, baseline) { Skipped = "qemu-system-x86_64/qemu-img not installed" };
        if (!File.Exists("/usr/bin/busybox") && !File.Exists("/bin/busybox"))
            return new BenchResult(Name, baseline) { Skipped = "busybox not installed (apt-get install busybox)" };
        await Repo.EnsureTinyImageAsync(ct);
        var runs = Math.Max(1, Math.Min(options.Runs, 5));

        var bare = new List<double>();
        await using (var pair = await BarePair.CreateAsync(ct))
        {
            await pair.StreamAsync(BareBlocks, ct); // warm-up
            for (var i = 0; i < runs; i++) bare.Add(await pair.StreamAsync(BareBlocks, ct));
        }

        var guest = new List<double>();
        await using (var kumod = await KumodProcess.StartAsync(Repo.ImagesDir, ct))
        {
            using (var net = await kumod.Http.PostAsJsonAsync("/api/v1/networks", new { name = "bench-net", subnet = GuestSubnet }, ct))
            {
                if (!net.IsSuccessStatusCode) throw new InvalidOperationException($"network create: {await net.Content.ReadAsStringAsync(ct)}");
            }
            var vms = new List<(string Id, string Address)>();
            foreach (var name in new[] { "net-a", "net-b" })
            {
                await KumoClient.CreateAndWaitReadyAsync(kumod.Http, name, new { name, network = "bench-net", memory = "256M" }, ct);
                var vm = await kumod.Http.GetFromJsonAsync<JsonElement>($"/api/v1/instances/{name}", ct);
                vms.Add((vm.GetProperty("id").GetString()!, vm.GetProperty("nics")[0].GetProperty("address").GetString()!));
            }
            var consoles = vms.Select(v => Path.Combine(kumod.StateDir, "agent", "instances", v.Id, "serial.sock")).ToArray();
            for (var i = 0; i < 2; i++)
                await WaitForAddressAsync(consoles[i], vms[i].Address, ct);
            await GuestStreamAsync(consoles, vms[1].Address, GuestBlocks, ct); // warm-up
            for (var i = 0; i < runs; i++) guest.Add(await GuestStreamAsync(consoles, vms[1].Address, GuestBlocks, ct));
            foreach (var name in new[] { "net-a", "net-b" })
                await KumoClient.DeleteAndWaitGoneAsync(kumod.Http, name, ct);
        }

        var result = new BenchResult(Name, baseline);
        var (g, b) = (Stats.Median(guest), Stats.Median(bare));
        result.Rows.Add(new($"guest->guest TCP on a Kumo network, median of {runs}", g, "MB/s", b));
        result.Rows.Add(new($"guest->guest TCP, best of {runs}", guest.Max(), "MB/s", bare.Max()));
        result.Notes.Add($"per run, kumo guests: {string.Join(", ", guest.Select(F))} MB/s ({GuestBlocks * BlockBytes >> 20} MiB each); "
            + $"bare bridge: {string.Join(", ", bare.Select(F))} MB/s ({BareBlocks * BlockBytes >> 20} MiB each)");
        result.Notes.Add("the guests run under TCG (no KVM here): their CPU, not the bridge or the rules, bounds the rate");
        result.Details["guestMBps"] = guest.Select(Round).ToList();
        result.Details["bareMBps"] = bare.Select(Round).ToList();
        return result;
    }

    private static string F(double v) => v.ToString("0.0", CultureInfo.InvariantCulture);

    private static double Round(double v) => Math.Round(v, 2);

    /// <summary>The shell line both sides run to send: prints the seconds it took, from /proc/uptime.</summary>
    private static string Sender(string address, int blocks) =>
        $"a=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero bs={BlockBytes} count={blocks} 2>/dev/null | nc {address} {Port}; "
        + "b=$(cut -d' ' -f1 /proc/uptime); echo \"ELAPSED $a $b\"";

    /// <summary>
    /// The receiver: counts bytes into a file (the count appears when the sender closes); its stdin never ends,
    /// because busybox nc quits when its stdin does.
    /// </summary>
    private static string Receiver(string countFile) => $"rm -f {countFile}; (sleep 600 | nc -l -p {Port} | wc -c > {countFile}) </dev/null >/dev/null 2>&1 &";

    private static double MBps(string output, long bytes)
    {
        var line = output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith("ELAPSED ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"the sender printed no timing: {output}");
        var f = line.Split(' ');
        var seconds = double.Parse(f[2], CultureInfo.InvariantCulture) - double.Parse(f[1], CultureInfo.InvariantCulture);
        // /proc/uptime has 10 ms steps; a run shorter than that is not measurable.
        return bytes / 1e6 / Math.Max(seconds, 0.01);
    }

    private static async Task<double> GuestStreamAsync(string[] consoles, string receiverAddress, int blocks, CancellationToken ct)
    {
        const string count = "/tmp/bench-rx";
        await ConsoleRunAsync(consoles[1], Receiver(count) + " sleep 1", ct);
        var output = await ConsoleRunAsync(consoles[0], Sender(receiverAddress, blocks), ct);
        var bytes = (long)blocks * BlockBytes;
        await WaitReceivedAsync(() => ConsoleRunAsync(consoles[1], $"cat {count} 2>/dev/null", ct), bytes, ct);
        return MBps(output, bytes);
    }

    private static async Task WaitReceivedAsync(Func<Task<string>> read, long bytes, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            last = await read();
            if (last.Split('\n').Any(l => l.Trim() == bytes.ToString(CultureInfo.InvariantCulture))) return;
            await Task.Delay(200, ct);
        }
        throw new InvalidOperationException($"the receiver did not count {bytes} bytes (last: {last.Trim()})");
    }

    private static async Task WaitForAddressAsync(string console, string address, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            last = await ConsoleRunAsync(console, "ip -4 addr show eth0", ct);
            if (last.Contains($"inet {address}/", StringComparison.Ordinal)) return;
            await Task.Delay(500, ct);
        }
        throw new TimeoutException($"guest did not get {address} by DHCP (last: {last})");
    }

    /// <summary>Types a command into a guest's serial console and returns what it printed (as the integration tests do).</summary>
    private static async Task<string> ConsoleRunAsync(string socketPath, string command, CancellationToken ct)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
        await using var stream = new NetworkStream(socket);
        var tag = Random.Shared.Next(100_000, 999_999);
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"\n{command}; echo KUMO-END-$(( {tag} + 1 ))\n"), ct);
        var end = $"KUMO-END-{tag + 1}";
        var buffer = new StringBuilder();
        var bytes = new byte[4096];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(120));
        while (true)
        {
            var n = await stream.ReadAsync(bytes, timeout.Token);
            if (n == 0) throw new IOException("console closed");
            buffer.Append(Encoding.ASCII.GetString(bytes, 0, n));
            var text = buffer.ToString();
            var at = text.IndexOf(end, StringComparison.Ordinal);
            if (at >= 0)
            {
                var echo = text.IndexOf("KUMO-END-$", StringComparison.Ordinal);
                return text[(echo >= 0 ? text.IndexOf('\n', echo) + 1 : 0)..at];
            }
        }
    }

    /// <summary>Two network namespaces, each with a veth into one bare bridge in the host namespace; removed on dispose.</summary>
    private sealed class BarePair : IAsyncDisposable
    {
        private readonly string _tag = Guid.NewGuid().ToString("N")[..6];
        private string Bridge => $"kbb-{_tag}";
        private string Ns(int i) => $"kumo-bench{i}-{_tag}";
        private string HostEnd(int i) => $"kbb{i}-{_tag}";

        public static async Task<BarePair> CreateAsync(CancellationToken ct)
        {
            var p = new BarePair();
            try
            {
                await MustAsync(["ip", "link", "add", p.Bridge, "type", "bridge"], ct);
                await MustAsync(["ip", "link", "set", p.Bridge, "up"], ct);
                for (var i = 0; i < 2; i++)
                {
                    await MustAsync(["ip", "netns", "add", p.Ns(i)], ct);
                    await MustAsync(["ip", "link", "add", p.HostEnd(i), "type", "veth", "peer", "name", "eth0", "netns", p.Ns(i)], ct);
                    await MustAsync(["ip", "link", "set", p.HostEnd(i), "master", p.Bridge], ct);
                    await MustAsync(["ip", "link", "set", p.HostEnd(i), "up"], ct);
                    await MustAsync(["ip", "-n", p.Ns(i), "addr", "add", $"{BareSubnetPrefix}{i + 2}/24", "dev", "eth0"], ct);
                    await MustAsync(["ip", "-n", p.Ns(i), "link", "set", "eth0", "up"], ct);
                    await MustAsync(["ip", "-n", p.Ns(i), "link", "set", "lo", "up"], ct);
                }
                return p;
            }
            catch
            {
                await p.DisposeAsync();
                throw;
            }
        }

        public async Task<double> StreamAsync(int blocks, CancellationToken ct)
        {
            var count = Path.Combine(Path.GetTempPath(), $"kumo-bench-rx-{_tag}");
            // The same shell lines as in the guests, with busybox's nc, dd and wc.
            await MustAsync(["ip", "netns", "exec", Ns(1), "busybox", "sh", "-c", Receiver(count).Replace("nc ", "busybox nc ", StringComparison.Ordinal) + " sleep 1"], ct);
            var bytes = (long)blocks * BlockBytes;
            var output = await MustAsync(["ip", "netns", "exec", Ns(0), "busybox", "sh", "-c",
                Sender($"{BareSubnetPrefix}3", blocks).Replace("| nc ", "| busybox nc ", StringComparison.Ordinal)], ct);
            await WaitReceivedAsync(async () => File.Exists(count) ? await File.ReadAllTextAsync(count, ct) : "", bytes, ct);
            File.Delete(count);
            return MBps(output, bytes);
        }

        public async ValueTask DisposeAsync()
        {
            for (var i = 0; i < 2; i++)
            {
                // The receiver's `sleep 600` holds the namespace open; end everything still running in it.
                if (await ExecAsync(["ip", "netns", "pids", Ns(i)], CancellationToken.None) is { ExitCode: 0 } pids) KillAll(pids.Output);
                await ExecAsync(["ip", "netns", "del", Ns(i)], CancellationToken.None);
                await ExecAsync(["ip", "link", "del", HostEnd(i)], CancellationToken.None);
            }
            await ExecAsync(["ip", "link", "del", Bridge], CancellationToken.None);
        }

        private static void KillAll(string pids)
        {
            foreach (var line in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(line, CultureInfo.InvariantCulture, out var pid)) continue;
                try
                {
                    using var p = Process.GetProcessById(pid);
                    p.Kill();
                }
                catch (ArgumentException)
                {
                }
            }
        }
    }

    private static async Task<string> MustAsync(string[] command, CancellationToken ct)
    {
        var (code, output) = await ExecAsync(command, ct);
        if (code != 0) throw new InvalidOperationException($"{string.Join(' ', command)} failed: {output}");
        return output;
    }

    private static async Task<(int ExitCode, string Output)> ExecAsync(string[] command, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync(ct);
        var error = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        return (p.ExitCode, await output + await error);
    }
}
