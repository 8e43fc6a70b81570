using System.CommandLine;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Kumo.Cli.Commands;

/// <summary>
/// kumo ct logs | exec | attach: a container's output and processes, through kumod's WebSocket/stream endpoints
/// (see <see cref="Kumo.Client.KumoClient.OpenContainerExecAsync"/> for the framing).
/// </summary>
internal static class ContainerSessionCommands
{
    private const byte StdinStream = 0;
    private const byte StderrStream = 2;
    private static readonly TimeSpan QuietAfterEndOfInput = TimeSpan.FromSeconds(1);

    public static Command Logs(CliContext cli)
    {
        var name = ContainerCommands.NameArgument();
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new output until the container ends (Ctrl-C leaves)" };
        var tail = new Option<int?>("--tail") { Description = "Only the last N lines", HelpName = "N" };
        var logs = new Command("logs", "Print a container's output (stdout and stderr)") { name, follow, tail };
        cli.Examples(logs, "kumo ct logs web", "kumo ct logs web -f --tail 20");
        cli.SetAction(logs, async run =>
        {
            var ctName = (await ContainerCommands.GetAsync(run, run.Get(name))).Name;
            if (run.Get(tail) is < 0) throw new UsageException("--tail must be 0 or more lines");
            var sink = new Utf8Sink(run.Environment.Out);
            await run.Client.CopyContainerLogsAsync(ctName, run.Get(follow), run.Get(tail), sink.WriteAsync, run.Cancellation);
            await sink.FlushAsync();
            return KumoCli.Ok;
        });
        return logs;
    }

    public static Command Exec(CliContext cli)
    {
        var name = ContainerCommands.NameArgument();
        var command = new Argument<string[]>("COMMAND") { Description = "Command and arguments, after --", Arity = ArgumentArity.OneOrMore };
        var interactive = new Option<bool>("--interactive", "-i") { Description = "Pass stdin to the command (end of input closes its stdin)" };
        var tty = new Option<bool>("--tty", "-t") { Description = "Give the command a terminal" };
        var exec = new Command("exec", "Run a command in a running container; exits with the command's exit code") { name, command, interactive, tty };
        cli.Examples(exec, "kumo ct exec web -- ls /", "kumo ct exec -it web -- sh", "echo hi | kumo ct exec -i web -- cat");
        cli.SetAction(exec, async run =>
        {
            var ctName = (await ContainerCommands.GetAsync(run, run.Get(name))).Name;
            var useTty = run.Get(tty);
            using var ws = await run.Client.OpenContainerExecAsync(ctName, run.Get(command), run.Get(interactive), useTty, run.Cancellation);
            using var raw = useTty && run.Environment.IsInputTerminal ? VmConsoleCommand.RawTerminal.Enter() : null;
            var session = new Session(ws, run.Environment, raw is null ? "\n" : "\r\n");
            using var resizing = raw is null ? null : await session.FollowTerminalSizeAsync(run.Cancellation);
            var output = session.ShowOutputAsync(run.Cancellation);
            var input = run.Get(interactive) ? session.TypeAsync(leaveKey: false, run.Cancellation) : null;
            await output;
            if (input is not null && !input.IsCompleted) session.StopTyping();
            if (session.ExitCode is { } code) return code;
            await run.Environment.Error.WriteAsync(session.Error is { } e
                ? $"kumo: {e}{session.Newline}"
                : $"kumo: the exec session ended without the command's exit code (the node or kumod went away){session.Newline}");
            return KumoCli.Failed;
        });
        return exec;
    }

    public static Command Attach(CliContext cli)
    {
        var name = ContainerCommands.NameArgument();
        var attach = new Command("attach", "Attach to a running container's main process (its stdin when run with -i; Ctrl-] leaves)") { name };
        cli.Examples(attach, "kumo ct attach shell", "printf 'hello\\n' | kumo ct attach shell");
        cli.SetAction(attach, async run =>
        {
            var ctName = (await ContainerCommands.GetAsync(run, run.Get(name))).Name;
            using var ws = await run.Client.OpenContainerAttachAsync(ctName, run.Cancellation);
            var env = run.Environment;
            using var raw = env.IsInputTerminal ? VmConsoleCommand.RawTerminal.Enter() : null;
            var session = new Session(ws, env, raw is null ? "\n" : "\r\n");
            using var resizing = raw is null ? null : await session.FollowTerminalSizeAsync(run.Cancellation);
            await env.Error.WriteAsync($"attached to {ctName}; Ctrl-] leaves (the container keeps running){session.Newline}");
            await env.Error.FlushAsync();
            var output = session.ShowOutputAsync(run.Cancellation);
            var input = session.TypeAsync(leaveKey: true, run.Cancellation);
            var first = await Task.WhenAny(output, input);
            if (first == input && !await input)
            {
                // End of piped input: let the process answer what was typed, as kumo vm console does.
                while (!output.IsCompleted && session.SinceOutput < QuietAfterEndOfInput)
                    await Task.WhenAny(output, Task.Delay(100, run.Cancellation));
            }
            if (!output.IsCompleted)
            {
                await session.LeaveAsync(output);
                return KumoCli.Ok;
            }
            session.StopTyping();
            if (session.Error is { } error)
            {
                await env.Error.WriteAsync($"kumo: {error}{session.Newline}");
                return KumoCli.Failed;
            }
            await env.Error.WriteAsync(session.ExitCode is { } code
                ? $"{session.Newline}container {ctName} exited with code {code}{session.Newline}"
                : $"{session.Newline}the attach session ended (kumod or the node went away){session.Newline}");
            return KumoCli.Ok;
        });
        return attach;
    }

    /// <summary>One exec or attach WebSocket: output to stdout/stderr, typed input, and what kumod says at the end.</summary>
    private sealed class Session(WebSocket ws, CliEnvironment env, string newline)
    {
        private readonly Utf8Sink _out = new(env.Out);
        private readonly Utf8Sink _err = new(env.Error);
        private readonly Stopwatch _lastOutput = Stopwatch.StartNew();
        private readonly CancellationTokenSource _typing = new();

        // A WebSocket takes one send at a time: typed input and size changes share it.
        private readonly SemaphoreSlim _sending = new(1, 1);

        private async Task SendAsync(ReadOnlyMemory<byte> message, WebSocketMessageType type, CancellationToken ct)
        {
            await _sending.WaitAsync(ct);
            try
            {
                await ws.SendAsync(message, type, true, ct);
            }
            finally
            {
                _sending.Release();
            }
        }

        /// <summary>
        /// Sends the terminal's size now and whenever it changes (SIGWINCH), so the process's terminal matches it
        /// (the agent asks the engine to resize it). Disposing stops following.
        /// </summary>
        public async Task<IDisposable?> FollowTerminalSizeAsync(CancellationToken ct)
        {
            if (Console.IsOutputRedirected) return null;
            await SendSizeAsync(ct);
            return PosixSignalRegistration.Create(PosixSignal.SIGWINCH, signal => _ = Task.Run(async () =>
            {
                try
                {
                    await SendSizeAsync(ct);
                }
                catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
                {
                }
            }, CancellationToken.None));
        }

        private Task SendSizeAsync(CancellationToken ct) =>
            SendAsync(JsonSerializer.SerializeToUtf8Bytes(new { resize = new { rows = Console.WindowHeight, cols = Console.WindowWidth } }),
                WebSocketMessageType.Text, ct);

        public string Newline => newline;
        public int? ExitCode { get; private set; }
        public string? Error { get; private set; }
        public TimeSpan SinceOutput => _lastOutput.Elapsed;

        public async Task ShowOutputAsync(CancellationToken ct)
        {
            var buffer = new byte[64 * 1024];
            var message = new MemoryStream();
            try
            {
                while (true)
                {
                    var r = await ws.ReceiveAsync(buffer, ct);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        // Answer the close, so kumod ends the connection cleanly rather than aborting it.
                        if (ws.State != WebSocketState.CloseReceived) return;
                        using var bye = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                        await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", bye.Token);
                        return;
                    }
                    _lastOutput.Restart();
                    message.Write(buffer, 0, r.Count);
                    if (!r.EndOfMessage) continue;
                    var bytes = message.GetBuffer().AsMemory(0, (int)message.Length);
                    if (r.MessageType == WebSocketMessageType.Text) await ControlAsync(bytes);
                    else if (bytes.Length > 1) await (bytes.Span[0] == StderrStream ? _err : _out).WriteAsync(bytes[1..], ct);
                    message.SetLength(0);
                }
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
            }
            finally
            {
                await _out.FlushAsync();
                await _err.FlushAsync();
            }
        }

        private async Task ControlAsync(ReadOnlyMemory<byte> json)
        {
            try
            {
                using var doc = JsonDocument.Parse(json);
                var root = doc.RootElement;
                if (root.TryGetProperty("exitCode", out var code) && code.TryGetInt32(out var c)) ExitCode = c;
                if (root.TryGetProperty("error", out var error)) Error = error.GetString();
                if (root.TryGetProperty("notice", out var notice))
                {
                    await env.Error.WriteAsync($"{newline}{notice.GetString()}{newline}");
                    await env.Error.FlushAsync();
                }
            }
            catch (JsonException)
            {
                // A message this CLI does not understand is not worth failing the session for.
            }
        }

        /// <summary>Sends stdin's bytes as they come.</summary>
        /// <returns>True when the person left with Ctrl-] (<paramref name="leaveKey"/>), false at the end of input.</returns>
        public async Task<bool> TypeAsync(bool leaveKey, CancellationToken ct)
        {
            using var typing = CancellationTokenSource.CreateLinkedTokenSource(ct, _typing.Token);
            using var stdin = Console.OpenStandardInput();
            var buffer = new byte[4096];
            try
            {
                while (true)
                {
                    // Reads block; keep them off the caller's thread.
                    var n = await Task.Run(() => stdin.Read(buffer, 1, buffer.Length - 1), typing.Token);
                    if (n == 0) break;
                    var leave = leaveKey ? Array.IndexOf(buffer, (byte)VmConsoleCommand.LeaveKey, 1, n) : -1;
                    var end = leave >= 0 ? leave : n + 1;
                    buffer[0] = StdinStream;
                    if (end > 1) await SendAsync(buffer.AsMemory(0, end), WebSocketMessageType.Binary, typing.Token);
                    if (leave >= 0) return true;
                }
                if (!leaveKey)
                    await SendAsync("{\"closeStdin\":true}"u8.ToArray(), WebSocketMessageType.Text, typing.Token);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
            }
            return false;
        }

        public void StopTyping() => _typing.Cancel();

        public async Task LeaveAsync(Task output)
        {
            StopTyping();
            try
            {
                using var bye = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "left", bye.Token);
                await output.WaitAsync(bye.Token);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException or TimeoutException)
            {
            }
        }
    }

    /// <summary>Bytes to a text writer, decoded as UTF-8 across chunk boundaries.</summary>
    private sealed class Utf8Sink(TextWriter writer)
    {
        private readonly Decoder _decoder = Encoding.UTF8.GetDecoder();

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct)
        {
            var chars = new char[Encoding.UTF8.GetMaxCharCount(bytes.Length)];
            var n = _decoder.GetChars(bytes.Span, chars, flush: false);
            await writer.WriteAsync(chars.AsMemory(0, n), ct);
            await writer.FlushAsync(ct);
        }

        public Task FlushAsync() => writer.FlushAsync();
    }
}
