using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Vms;

/// <summary>One tiny guest whose serial console the tests type into, shared by every test of <see cref="ConsoleTests"/>.</summary>
public sealed class ConsoleGuest : IAsyncLifetime
{
    public const string Vm = "con1";

    public KumoEnvironment Env { get; private set; } = null!;

    /// <summary>The whole gdb stub pool: one free port, so the tests need no fixed port another run might hold.</summary>
    public int DebugPort { get; } = DaemonProcess.FreePort();

    public async Task InitializeAsync()
    {
        Env = await KumoEnvironment.StartAsync(true, "--debug-ports", $"{DebugPort}-{DebugPort}");
        var op = await Env.CreateAsync(Vm);
        if (op.Status != OperationStatuses.Succeeded) throw new InvalidOperationException($"{op.Error}\n{Env.Diagnostics()}");
    }

    public async Task DisposeAsync() => await Env.DisposeAsync();
}

/// <summary>
/// The serial console through kumod (WebSocket viewers, the CLI, the kept log, and who may use it) and the gdb stub,
/// on one guest.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ConsoleTests(ConsoleGuest fixture) : IClassFixture<ConsoleGuest>
{
    private static readonly TimeSpan Answer = TimeSpan.FromSeconds(30);

    private KumoEnvironment Env => fixture.Env;

    /// <summary>A line for the busybox shell whose answer cannot be its own echo: the shell expands $RANDOM.</summary>
    private static (string Command, Regex Answer) Probe()
    {
        var tag = Random.Shared.Next(100_000, 999_999);
        return ($"echo kumo-$RANDOM-{tag}\n", new Regex($@"kumo-\d+-{tag}"));
    }

    [Fact]
    public async Task WebSocket_TypedCommandIsAnswered_BothViewersSeeIt_OnlyTheFirstWriterTypes()
    {
        await using var first = await ConsoleSocket.ConnectAsync(Env, ConsoleGuest.Vm);
        await using var second = await ConsoleSocket.ConnectAsync(Env, ConsoleGuest.Vm);

        var (command, answer) = Probe();
        await EventuallyTypedAsync(first, command, answer);
        var seen = await first.WaitForAsync(answer, Answer);
        Assert.Equal(seen.Value, (await second.WaitForAsync(answer, Answer)).Value);

        // The first viewer who typed holds the keyboard: the second is told, and its keys never reach the shell.
        var (refused, refusedAnswer) = Probe();
        await second.TypeAsync(refused);
        Assert.Contains("another viewer is typing", await second.WaitForNoticeAsync(Answer));
        var (after, afterAnswer) = Probe();
        await first.TypeAsync(after);
        await first.WaitForAsync(afterAnswer, Answer);
        Assert.DoesNotMatch(refusedAnswer, first.Output);

        // Once the writer leaves, the keyboard is free for the next viewer who types.
        await first.DisposeAsync();
        var (next, nextAnswer) = Probe();
        await EventuallyTypedAsync(second, next, nextAnswer);
    }

    [Fact]
    public async Task Cli_TypesFromAPipe_ShowsTheAnswer_AndCtrlBracketLeaves()
    {
        Assert.Equal(0, (await Env.CliAsync("vm", "console", ConsoleGuest.Vm, "--log")).ExitCode);
        using var cli = new InteractiveCli(Env.CliHome, Env.Url, Env.Token, "vm", "console", ConsoleGuest.Vm);
        var (command, answer) = Probe();
        await EventuallyAsync(async () =>
        {
            // Typing starts once the session is up; until then keys have nowhere to go.
            await cli.WriteAsync("\n" + command);
            return answer.IsMatch(cli.Out);
        }, "the CLI to show the guest's answer");

        await cli.WriteAsync("\u001d");
        Assert.Equal(0, await cli.WaitForExitAsync(Answer));
        Assert.Contains("Ctrl-] leaves", cli.Err);
    }

    [Fact]
    public async Task Log_KeepsRecentOutput_AcrossAnAgentRestart_AndTheConsoleReattaches()
    {
        var (command, answer) = Probe();
        await using (var viewer = await ConsoleSocket.ConnectAsync(Env, ConsoleGuest.Vm))
        {
            await viewer.TypeAsync("\n" + command);
            await viewer.WaitForAsync(answer, Answer);
        }
        var printed = answer.Match((await Env.CliAsync("vm", "console", ConsoleGuest.Vm, "--log")).Out).Value;
        Assert.NotEmpty(printed);

        // kill -9 of the all-in-one kumod takes its agent down too; the guest keeps running.
        Env.Server!.Crash();
        await Env.StartServerAsync();
        await ApiClient.EventuallyAsync(() => Env.Api.GetAsync(ConsoleGuest.Vm), i => i?.State == InstanceStates.Running, Answer, "the guest adopted");

        var log = await Env.CliAsync("vm", "console", ConsoleGuest.Vm, "--log");
        Assert.True(log.ExitCode == 0, log.Err);
        Assert.Contains(printed, log.Out);
        Assert.Contains("kumo tiny: booted", log.Out);

        await using var again = await ConsoleSocket.ConnectAsync(Env, ConsoleGuest.Vm);
        var (next, nextAnswer) = Probe();
        await EventuallyTypedAsync(again, next, nextAnswer);
    }

    [Fact]
    public async Task OtherUsers_CannotUseTheConsole_NotFoundOutsideTheProject_ForbiddenInsideIt()
    {
        var bob = await UserAsync("bob-con");
        using var asBob = new ApiClient(new Uri(Env.Url), Env.CaPath);
        asBob.Http.DefaultRequestHeaders.Authorization = new("Bearer", bob);
        var owner = (await Env.Api.Http.GetFromJsonAsync<User>("/api/v1/auth/whoami", ApiClient.Json))!.Name;

        using var log = await asBob.Http.GetAsync($"/api/v1/instances/{ConsoleGuest.Vm}/console/log?project={owner}");
        Assert.Equal(HttpStatusCode.NotFound, log.StatusCode);
        var (socket, status) = await ConsoleSocket.TryConnectAsync(Env, ConsoleGuest.Vm, bob, owner);
        Assert.Null(socket);
        Assert.Equal(404, status);

        // In a project they share, bob may see the admin's VM but not use its console.
        using (var p = await Env.Api.Http.PostAsJsonAsync("/api/v1/projects", new ProjectsPost { Name = "conlab" }, ApiClient.Json))
            Assert.Equal(HttpStatusCode.Created, p.StatusCode);
        using (var m = await Env.Api.Http.PostAsJsonAsync("/api/v1/projects/conlab/members", new MemberPost { User = "bob-con" }, ApiClient.Json))
            Assert.Equal(HttpStatusCode.OK, m.StatusCode);
        using (var c = await Env.Api.Http.PostAsJsonAsync("/api/v1/instances?project=conlab",
            new { name = "shared1", image = "tiny", memory = "128M", disk = "64M", stopped = true }, ApiClient.Json))
            Assert.Equal(HttpStatusCode.Accepted, c.StatusCode);
        using var shared = await asBob.Http.GetAsync("/api/v1/instances/shared1/console/log?project=conlab");
        Assert.Equal(HttpStatusCode.Forbidden, shared.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await asBob.Http.GetAsync("/api/v1/instances/shared1?project=conlab")).StatusCode);
    }

    [Fact]
    public async Task PlainGet_OfTheConsole_IsWebSocketRequired()
    {
        using var r = await Env.Api.Http.GetAsync($"/api/v1/instances/{ConsoleGuest.Vm}/console");
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        var problem = await r.Content.ReadFromJsonAsync<Problem>(ApiClient.Json);
        Assert.Equal(ProblemTypes.WebSocketRequired, problem!.Type);
    }

    [Fact]
    public async Task Debug_GdbReadsRipThroughTheStub_OthersCannotGetIt_OffFreesThePort()
    {
        var target = $"target remote 127.0.0.1:{fixture.DebugPort}";
        var on = await Env.CliAsync("vm", "debug", ConsoleGuest.Vm);
        Assert.True(on.ExitCode == 0, on.Err + Env.Diagnostics());
        Assert.Equal(target, on.Out.Trim());

        var gdb = await RunAsync("gdb", "-batch", "-ex", target, "-ex", "info registers rip");
        Assert.Matches(@"rip\s+0x[0-9a-f]+", gdb);

        // --attach runs gdb already connected; here it reads its commands from a pipe.
        var attach = await CliProcess.RunInAsync(Env.CliHome, Env.Url, new Dictionary<string, string?> { ["KUMO_TOKEN"] = Env.Token },
            "info registers rip\n", "vm", "debug", ConsoleGuest.Vm, "--attach");
        Assert.True(attach.ExitCode == 0, attach.Err);
        Assert.Matches(@"rip\s+0x[0-9a-f]+", attach.Out);

        // Another user cannot learn or take the port of someone else's VM.
        var bob = await UserAsync("bob-dbg");
        using var asBob = new ApiClient(new Uri(Env.Url), Env.CaPath);
        asBob.Http.DefaultRequestHeaders.Authorization = new("Bearer", bob);
        var owner = (await Env.Api.Http.GetFromJsonAsync<User>("/api/v1/auth/whoami", ApiClient.Json))!.Name;
        using (var get = await asBob.Http.GetAsync($"/api/v1/instances/{ConsoleGuest.Vm}/debug?project={owner}"))
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        using (var post = await asBob.Http.PostAsync($"/api/v1/instances/{ConsoleGuest.Vm}/debug?project={owner}", null))
            Assert.Equal(HttpStatusCode.NotFound, post.StatusCode);

        var off = await Env.CliAsync("vm", "debug", ConsoleGuest.Vm, "--off");
        Assert.True(off.ExitCode == 0, off.Err);
        Assert.False((await Env.Api.Http.GetFromJsonAsync<DebugStub>($"/api/v1/instances/{ConsoleGuest.Vm}/debug", ApiClient.Json))!.Enabled);
        await EventuallyAsync(async () =>
        {
            using var probe = new System.Net.Sockets.TcpClient();
            try
            {
                await probe.ConnectAsync(IPAddress.Loopback, fixture.DebugPort);
                return false;
            }
            catch (System.Net.Sockets.SocketException)
            {
                return true;
            }
        }, "QEMU to close the stub's port");

        // gdb detached: the guest runs on.
        await using var viewer = await ConsoleSocket.ConnectAsync(Env, ConsoleGuest.Vm);
        var (command, answer) = Probe();
        await EventuallyTypedAsync(viewer, command, answer);
    }

    private static async Task<string> RunAsync(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.StandardInput.Close();
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Answer);
        await p.WaitForExitAsync(cts.Token);
        return await output + await error;
    }

    private async Task<string> UserAsync(string name)
    {
        using (var r = await Env.Api.Http.PostAsJsonAsync("/api/v1/users", new UsersPost { Name = name, Password = name + "-password", Role = "user" }, ApiClient.Json))
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        using var anonymous = new ApiClient(new Uri(Env.Url), Env.CaPath);
        using var login = await anonymous.Http.PostAsJsonAsync("/api/v1/auth/login", new LoginRequest { Username = name, Password = name + "-password" }, ApiClient.Json);
        login.EnsureSuccessStatusCode();
        return (await login.Content.ReadFromJsonAsync<LoginResponse>(ApiClient.Json))!.Token;
    }

    /// <summary>Types until the answer shows: right after a viewer joins (or the agent re-attaches) keys may be lost.</summary>
    private static Task EventuallyTypedAsync(ConsoleSocket viewer, string command, Regex answer) =>
        EventuallyAsync(async () =>
        {
            await viewer.TypeAsync("\n" + command);
            try
            {
                await viewer.WaitForAsync(answer, TimeSpan.FromSeconds(3));
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
        }, $"an answer matching {answer}");

    private static async Task EventuallyAsync(Func<Task<bool>> attempt, string what)
    {
        var deadline = DateTime.UtcNow + Answer;
        while (!await attempt())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(500);
        }
    }
}
