using System.CommandLine;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;

namespace Kumo.Cli.Commands;

/// <summary>
/// kumo vm console NAME [--log]. At a terminal the terminal goes raw (every key goes to the guest) until Ctrl-];
/// from a pipe, stdin's bytes are typed as they come, a Ctrl-] byte leaves, and end of input leaves once the console
/// has been quiet for a moment (so `echo ls | kumo vm console web` shows the answer).
/// </summary>
internal static class VmConsoleCommand
{
    /// <summary>Ctrl-], as telnet and virsh console use it.</summary>
    public const char LeaveKey = '\u001d';

    private static readonly TimeSpan QuietAfterEndOfInput = TimeSpan.FromSeconds(1);

    public static Command Create(CliContext cli)
    {
        var name = VmCommands.NameArgument();
        var log = new Option<bool>("--log") { Description = "Print the recent output the node keeps (the last 64 KiB) and exit; works on stopped VMs" };
        var console = new Command("console", "Attach to a VM's serial console (Ctrl-] leaves)") { name, log };
        cli.Examples(console, "kumo vm console web", "kumo vm console web --log | tail -20", "printf 'uname -a\\n' | kumo vm console web");
        cli.SetAction(console, async run =>
        {
            var vm = Check.Name(run.Get(name), "vm name");
            if (run.Get(log))
            {
                var bytes = await run.Client.GetConsoleLogAsync(vm, run.Cancellation);
                await run.Environment.Out.WriteAsync(Encoding.UTF8.GetString(bytes));
                await run.Environment.Out.FlushAsync();
                return KumoCli.Ok;
            }
            using var ws = await run.Client.OpenConsoleAsync(vm, run.Cancellation);
            return await AttachAsync(run, vm, ws);
        });
        return console;
    }

    private static async Task<int> AttachAsync(Invocation run, string vm, WebSocket ws)
    {
        var env = run.Environment;
        using var raw = env.IsInputTerminal ? RawTerminal.Enter() : null;
        var newline = raw is null ? "\n" : "\r\n";
        await env.Error.WriteAsync($"connected to the console of {vm}; Ctrl-] leaves{newline}");
        await env.Error.FlushAsync();
        using var session = CancellationTokenSource.CreateLinkedTokenSource(run.Cancellation);
        var lastOutput = Stopwatch.StartNew();
        var output = ShowOutputAsync(ws, env, newline, lastOutput, session.Token);
        var input = raw is null ? TypePipeAsync(ws, env.In, session.Token) : TypeTerminalAsync(ws, session.Token);
        var first = await Task.WhenAny(output, input);
        if (first == input && !await input)
        {
            // End of piped input: let the guest answer what was typed.
            while (!output.IsCompleted && lastOutput.Elapsed < QuietAfterEndOfInput)
                await Task.WhenAny(output, Task.Delay(100, run.Cancellation));
        }
        if (!output.IsCompleted)
        {
            try
            {
                using var bye = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "viewer left", bye.Token);
                await output.WaitAsync(bye.Token);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException or TimeoutException)
            {
            }
        }
        else
        {
            await env.Error.WriteAsync($"{newline}the console session ended (the VM stopped or kumod went away){newline}");
        }
        await session.CancelAsync();
        return KumoCli.Ok;
    }

    private static async Task ShowOutputAsync(WebSocket ws, CliEnvironment env, string newline, Stopwatch lastOutput, CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        var chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
        var decoder = Encoding.UTF8.GetDecoder();
        var notice = new StringBuilder();
        try
        {
            while (true)
            {
                var r = await ws.ReceiveAsync(buffer, ct);
                if (r.MessageType == WebSocketMessageType.Close) return;
                lastOutput.Restart();
                if (r.MessageType == WebSocketMessageType.Text)
                {
                    notice.Append(Encoding.UTF8.GetString(buffer, 0, r.Count));
                    if (!r.EndOfMessage) continue;
                    await env.Error.WriteAsync($"{newline}{notice}{newline}");
                    await env.Error.FlushAsync(ct);
                    notice.Clear();
                    continue;
                }
                var n = decoder.GetChars(buffer, 0, r.Count, chars, 0);
                await env.Out.WriteAsync(chars.AsMemory(0, n), ct);
                await env.Out.FlushAsync(ct);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
        }
    }

    /// <returns>True when the person left with Ctrl-], false at the end of input.</returns>
    private static async Task<bool> TypePipeAsync(WebSocket ws, TextReader input, CancellationToken ct)
    {
        var chars = new char[4096];
        while (true)
        {
            // Console.In reads synchronously; keep that off the caller's thread.
            var n = await Task.Run(() => input.Read(chars, 0, chars.Length), ct);
            if (n == 0) return false;
            var leave = Array.IndexOf(chars, LeaveKey, 0, n);
            var text = leave >= 0 ? new string(chars, 0, leave) : new string(chars, 0, n);
            if (text.Length > 0)
                await ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Binary, true, ct);
            if (leave >= 0) return true;
        }
    }

    private static async Task<bool> TypeTerminalAsync(WebSocket ws, CancellationToken ct)
    {
        using var stdin = Console.OpenStandardInput();
        var buffer = new byte[1024];
        while (true)
        {
            var n = await Task.Run(() => stdin.Read(buffer, 0, buffer.Length), ct);
            if (n == 0) return false;
            var leave = Array.IndexOf(buffer, (byte)LeaveKey, 0, n);
            var end = leave >= 0 ? leave : n;
            if (end > 0)
                await ws.SendAsync(buffer.AsMemory(0, end), WebSocketMessageType.Binary, true, ct);
            if (leave >= 0) return true;
        }
    }

    /// <summary>The terminal in raw mode without echo (stty), restored on dispose: every key reaches the guest.</summary>
    internal sealed class RawTerminal : IDisposable
    {
        private readonly string _saved;

        private RawTerminal(string saved) => _saved = saved;

        public static RawTerminal? Enter()
        {
            var saved = Stty("-g");
            if (saved is null) return null;
            Stty("raw", "-echo");
            return new RawTerminal(saved.Trim());
        }

        public void Dispose() => Stty(_saved);

        /// <summary>Runs stty on the inherited terminal (stdin is not redirected); null when it fails.</summary>
        private static string? Stty(params string[] args)
        {
            var psi = new ProcessStartInfo("stty") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            try
            {
                using var p = Process.Start(psi)!;
                var output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                return p.ExitCode == 0 ? output : null;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return null;
            }
        }
    }
}
