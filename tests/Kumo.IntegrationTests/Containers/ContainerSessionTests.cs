using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Containers;

/// <summary>
/// kumo ct logs / exec / attach end to end: the real CLI, kumod's endpoints, the console broker's session calls to the
/// agent, and the engine's logs, exec and attach streams of real podman containers.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ContainerSessionTests(ContainerKumo fixture) : IClassFixture<ContainerKumo>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private KumoEnvironment Env => fixture.Env;

    private Task<CliResult> Alice(params string[] args) => Env.CliAsAsync(fixture.Alice, args);

    private Task<CliResult> Bob(params string[] args) => Env.CliAsAsync(fixture.Bob, args);

    private void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}\n{Env.Diagnostics()}");

    private static string NewToken() => Guid.NewGuid().ToString("n");

    /// <summary>The real CLI as alice, with <paramref name="stdin"/> piped in.</summary>
    private async Task<CliResult> AliceWithInputAsync(string stdin, params string[] args)
    {
        Ok(await Alice("ct", "list"));
        return await CliProcess.RunInAsync(Env.CliHome, Env.Url,
            new Dictionary<string, string?> { ["KUMO_TOKEN"] = fixture.Alice, ["KUMO_PROJECT"] = null }, stdin, args);
    }

    private async Task<HttpResponseMessage> GetAsync(string token, string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return await Env.Api.Http.SendAsync(request);
    }

    private async Task<Instance> EventuallyAsync(string name, Func<Instance, bool> condition, string what) =>
        await ApiClient.EventuallyAsync(async () =>
        {
            using var response = await GetAsync(fixture.Alice, $"/api/v1/instances/{name}");
            response.EnsureSuccessStatusCode();
            return (await response.Content.ReadFromJsonAsync<Instance>(ApiClient.Json))!;
        }, condition, Patience, what);

    [Fact]
    public async Task Logs_ShowWhatTheContainerPrinted_OnBothStreams_AndTailCutsThemShort()
    {
        var token = NewToken();
        Ok(await Alice("ct", "run", "talk", "-e", $"TOKEN={token}", "--",
            "sh", "-c", "echo out-$TOKEN; echo err-$TOKEN >&2; echo mid-$TOKEN; echo last-$TOKEN; exec sleep 600"));

        var logs = await ApiClient.EventuallyAsync(() => Alice("ct", "logs", "talk"), r => r.Out.Contains($"last-{token}", StringComparison.Ordinal),
            Patience, "the container's output in kumo ct logs");
        Ok(logs);
        Assert.Contains($"out-{token}", logs.Out);
        Assert.Contains($"err-{token}", logs.Out);

        // stdout and stderr reach the log through separate pipes, so the stderr line may land anywhere; the last two
        // lines are never the first stdout line.
        var tail = await Alice("ct", "logs", "talk", "--tail", "2");
        Ok(tail);
        Assert.Contains($"last-{token}", tail.Out);
        Assert.DoesNotContain($"out-{token}", tail.Out);

        Ok(await Alice("ct", "rm", "talk", "--force"));
    }

    [Fact]
    public async Task LogsFollow_StreamsNewOutput_AndEndsWhenTheContainerEnds()
    {
        var token = NewToken();
        // The container waits for a file the test creates through exec, so the second line is printed while -f is reading.
        Ok(await Alice("ct", "run", "ticker", "-e", $"TOKEN={token}", "--",
            "sh", "-c", "echo first-$TOKEN; while [ ! -e /tmp/go ]; do sleep 1; done; echo second-$TOKEN"));
        using var follow = new InteractiveCli(Env.CliHome, Env.Url, fixture.Alice, "ct", "logs", "ticker", "-f");
        await follow.WaitForAsync(new Regex($"first-{token}"), Patience);
        Assert.DoesNotContain($"second-{token}", follow.Out);

        Ok(await Alice("ct", "exec", "ticker", "--", "touch", "/tmp/go"));
        await follow.WaitForAsync(new Regex($"second-{token}"), Patience);
        Assert.Equal(0, await follow.WaitForExitAsync(Patience));
        Ok(await Alice("ct", "rm", "ticker", "--force"));
    }

    [Fact]
    public async Task Exec_ReturnsTheCommandsOutput_AndItsExitCode()
    {
        var token = NewToken();
        Ok(await Alice("ct", "run", "box", "-e", $"TOKEN={token}", "--", "sh", "-c", "echo $TOKEN > /tmp/token; exec sleep 600"));

        var cat = await ApiClient.EventuallyAsync(() => Alice("ct", "exec", "box", "--", "cat", "/tmp/token"), r => r.ExitCode == 0,
            Patience, "cat of the file the container wrote");
        Assert.Equal(token + "\n", cat.Out);

        var three = await Alice("ct", "exec", "box", "--", "sh", "-c", "exit 3");
        Assert.True(three.ExitCode == 3, $"exit {three.ExitCode}: {three.Err}\n{Env.Diagnostics()}");

        // stderr stays stderr.
        var oops = await Alice("ct", "exec", "box", "--", "sh", "-c", $"echo oops-{token} >&2; exit 1");
        Assert.Equal(1, oops.ExitCode);
        Assert.Contains($"oops-{token}", oops.Err);
        Assert.DoesNotContain($"oops-{token}", oops.Out);

        // -i: the CLI's stdin reaches the command, and its end closes the command's stdin (cat ends).
        var piped = await AliceWithInputAsync($"piped-{token}\n", "ct", "exec", "-i", "box", "--", "cat");
        Ok(piped);
        Assert.Equal($"piped-{token}\n", piped.Out);

        Ok(await Alice("ct", "rm", "box", "--force"));
    }

    [Fact]
    public async Task Exec_OnAStoppedContainer_IsRefusedWithInvalidState()
    {
        Ok(await Alice("ct", "run", "done1", "--no-wait", "--", "true"));
        await EventuallyAsync("done1", i => i.State == InstanceStates.Stopped, "the container to end by itself");

        var r = await Alice("ct", "exec", "done1", "--", "ls");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("exec needs a running container", r.Err);

        using var response = await GetAsync(fixture.Alice, "/api/v1/instances/done1/exec?command=ls");
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<Problem>(ApiClient.Json);
        Assert.Equal(ProblemTypes.InvalidState, problem!.Type);

        // Its log is still there to read.
        Ok(await Alice("ct", "logs", "done1"));
        Ok(await Alice("ct", "rm", "done1"));
    }

    [Fact]
    public async Task Attach_RoundTripsALine_AndCtrlBracketLeavesTheContainerRunning()
    {
        Ok(await Alice("ct", "run", "echoer", "-i", "--", "cat"));
        using var cli = new InteractiveCli(Env.CliHome, Env.Url, fixture.Alice, "ct", "attach", "echoer");
        var token = NewToken();
        await ApiClient.EventuallyAsync(async () =>
        {
            // Typing starts once the session is up; until then the line has nowhere to go.
            await cli.WriteAsync($"line-{token}\n");
            return cli.Out.Contains($"line-{token}", StringComparison.Ordinal);
        }, x => x, Patience, "cat in the container to echo the typed line");

        await cli.WriteAsync("\u001d");
        Assert.Equal(0, await cli.WaitForExitAsync(Patience));
        Assert.Contains("Ctrl-] leaves", cli.Err);
        Assert.Equal(InstanceStates.Running, (await EventuallyAsync("echoer", _ => true, "echoer")).State);
        Ok(await Alice("ct", "rm", "echoer", "--force"));
    }

    [Fact]
    public async Task AnotherUser_CannotReadLogsOrExec_InSomeoneElsesContainer()
    {
        Ok(await Alice("ct", "run", "private1", "--", "sleep", "600"));

        var logs = await Bob("ct", "logs", "private1");
        Assert.NotEqual(0, logs.ExitCode);
        Assert.Contains("does not exist", logs.Err);
        var exec = await Bob("ct", "exec", "private1", "--", "ls");
        Assert.NotEqual(0, exec.ExitCode);
        Assert.Contains("does not exist", exec.Err);

        // Naming alice's project does not help: her container stays hidden (404), not merely forbidden.
        foreach (var path in new[] { "logs", "exec?command=ls", "attach" })
        {
            using var response = await GetAsync(fixture.Bob, $"/api/v1/instances/private1/{path}{(path.Contains('?') ? '&' : '?')}project=alice");
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }
        Ok(await Alice("ct", "rm", "private1", "--force"));
    }

    [Fact]
    public async Task ExecWithTerminal_ResizeMessage_ResizesTheCommandsTerminal()
    {
        Ok(await Alice("ct", "run", "term", "--", "sleep", "600"));
        using var invoker = new HttpMessageInvoker(new Kumo.Client.Trust.PinnedCaHandler(Kumo.Core.Security.CaTrust.LoadPem(Env.CaPath)));
        using var ws = new System.Net.WebSockets.ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "Bearer " + fixture.Alice);
        // The command waits for a line, so the size it reads is the one set before the line was sent.
        var query = string.Join("&", new[] { "sh", "-c", "read x; stty size" }.Select(c => "command=" + Uri.EscapeDataString(c)));
        await ws.ConnectAsync(new Uri($"wss://127.0.0.1:{Env.ApiPort}/api/v1/instances/term/exec?{query}&stdin=true&tty=true"), invoker, CancellationToken.None);
        await ws.SendAsync("{\"resize\":{\"rows\":37,\"cols\":101}}"u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Text, true, CancellationToken.None);
        await ws.SendAsync(new byte[] { 0, (byte)'g', (byte)'o', (byte)'\n' }, System.Net.WebSockets.WebSocketMessageType.Binary, true, CancellationToken.None);

        var output = new System.Text.StringBuilder();
        int? exitCode = null;
        using var deadline = new CancellationTokenSource(Patience);
        var buffer = new byte[16 * 1024];
        var message = new MemoryStream();
        while (exitCode is null)
        {
            var r = await ws.ReceiveAsync(buffer, deadline.Token);
            if (r.MessageType == System.Net.WebSockets.WebSocketMessageType.Close) break;
            message.Write(buffer, 0, r.Count);
            if (!r.EndOfMessage) continue;
            var bytes = message.ToArray();
            message.SetLength(0);
            if (r.MessageType == System.Net.WebSockets.WebSocketMessageType.Binary && bytes.Length > 1) output.Append(System.Text.Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1));
            else if (r.MessageType == System.Net.WebSockets.WebSocketMessageType.Text
                && System.Text.Json.JsonDocument.Parse(bytes).RootElement.TryGetProperty("exitCode", out var code)) exitCode = code.GetInt32();
        }
        Assert.Equal(0, exitCode);
        Assert.Contains("37 101", output.ToString());
        Ok(await Alice("ct", "rm", "term", "--force"));
    }
}
