using Kumo.Core;

namespace Kumo.IntegrationTests.Infrastructure;

/// <summary>
/// A throw-away Kumo installation: a temp state dir, a real kumod (optionally all-in-one) and extra kumo-agent
/// processes on free loopback ports. Disposal kills every process and every guest started under the dir.
/// </summary>
public sealed class KumoEnvironment : IAsyncDisposable
{
    private readonly List<DaemonProcess> _agents = [];
    private readonly bool _allInOne;
    private readonly string[] _serverArgs;
    private readonly bool _insecureHttp;
    private readonly string? _suppliedCa;
    private bool _cliTrusts;

    private readonly string _agentHost;

    private KumoEnvironment(bool allInOne, string[] serverArgs, string imagesDir, string agentHost = "127.0.0.1")
    {
        _agentHost = agentHost;
        _allInOne = allInOne;
        _serverArgs = serverArgs;
        ImagesDir = imagesDir;
        StateDir = Path.Combine(Path.GetTempPath(), "kumo-it-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(StateDir);
        var ports = DaemonProcess.FreePorts(3);
        (ApiPort, AgentPort, ProxyPort) = (ports[0], ports[1], ports[2]);
        _insecureHttp = serverArgs.Contains("--insecure-http");
        var ca = Array.IndexOf(serverArgs, "--tls-ca");
        _suppliedCa = ca >= 0 ? serverArgs[ca + 1] : null;
    }

    public string StateDir { get; }
    public string ImagesDir { get; }
    public int ApiPort { get; }
    public int AgentPort { get; }

    /// <summary>kumod's reverse proxy for containers (plain HTTP on loopback).</summary>
    public int ProxyPort { get; }

    /// <summary>REST helpers over HTTPS trusting kumod's STATE/pki/ca.crt; set once kumod has made its CA.</summary>
    public ApiClient Api { get; private set; } = null!;

    public DaemonProcess? Server { get; private set; }
    public string Url => $"{(_insecureHttp ? "http" : "https")}://127.0.0.1:{ApiPort}";
    public string AgentUrl => $"https://{_agentHost}:{AgentPort}";

    /// <summary>The CA clients pin: kumod's own (STATE/pki/ca.crt), or the one given with --tls-ca.</summary>
    public string CaPath => _suppliedCa ?? Path.Combine(StateDir, "pki", "ca.crt");

    /// <summary>Home directory of the test's CLI user: ~/.config/kumo with the CA pinned.</summary>
    public string CliHome => Path.Combine(StateDir, "cli-home");

    /// <summary>Directory of the all-in-one agent's instances.</summary>
    public string LocalInstancesDir => Path.Combine(StateDir, "agent", "instances");

    public static async Task<KumoEnvironment> StartAsync(bool allInOne = true, params string[] serverArgs)
    {
        var env = new KumoEnvironment(allInOne, serverArgs, await TestImages.DirAsync());
        await env.StartServerAsync();
        return env;
    }

    /// <summary>
    /// kumod without a local agent, its agent endpoint on <paramref name="agentHost"/> (an address the test put on a
    /// veth or bridge) so agents in other network namespaces can reach it.
    /// </summary>
    public static async Task<KumoEnvironment> StartWithAgentHostAsync(string agentHost)
    {
        var env = new KumoEnvironment(false, [], await TestImages.DirAsync(), agentHost);
        await env.StartServerAsync();
        return env;
    }

    /// <summary>Starts (or restarts) kumod; <paramref name="extraArgs"/> apply to this start only.</summary>
    public async Task StartServerAsync(params string[] extraArgs)
    {
        var args = new List<string>
        {
            "--state-dir", StateDir,
            "--listen", $"127.0.0.1:{ApiPort}",
            "--agent-listen", $"{_agentHost}:{AgentPort}",
            "--proxy-listen", $"127.0.0.1:{ProxyPort}",
            "--images-dir", ImagesDir,
        };
        if (_allInOne)
        {
            args.AddRange(["--all-in-one", "--node-name", "local", "--accel", "tcg", "--stop-grace-seconds", "20",
                "--user-data-dir", UserDataDir]);
        }
        args.AddRange(_serverArgs);
        args.AddRange(extraArgs);
        Server = DaemonProcess.Start(Repo.KumodDll, args);
        await WaitUntilAsync(async () =>
        {
            if (Server.HasExited) throw new InvalidOperationException("kumod exited:\n" + Server.Log);
            // kumod writes its CA (atomically) before it listens.
            if (!File.Exists(Path.Combine(StateDir, "pki", "ca.crt"))) return false;
            Api ??= new ApiClient(new Uri(Url), _insecureHttp ? null : CaPath);
            try
            {
                if (Api.Http.DefaultRequestHeaders.Authorization is null) await LoginAsync();
                var nodes = await Api.NodesAsync();
                return !_allInOne || nodes.Any(n => n.Name == "local" && n.State == NodeStates.Ready);
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(60), "kumod to answer" + (_allInOne ? " with its local node ready" : ""));
    }

    /// <summary>The bootstrap admin's bearer token (after the first start).</summary>
    public string? Token { get; private set; }

    /// <summary>Logs in as the admin kumod created on first start (its credential is in STATE/initial-admin).</summary>
    private async Task LoginAsync()
    {
        var file = Path.Combine(StateDir, "initial-admin");
        if (!File.Exists(file)) throw new HttpRequestException("no initial admin yet");
        var lines = await File.ReadAllLinesAsync(file);
        using var r = await Api.Http.PostAsync("/api/v1/auth/login", System.Net.Http.Json.JsonContent.Create(new LoginRequest { Username = lines[0], Password = lines[1] }));
        r.EnsureSuccessStatusCode();
        Token = (await System.Net.Http.Json.HttpContentJsonExtensions.ReadFromJsonAsync<LoginResponse>(r.Content, ApiClient.Json))!.Token;
        Api.Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Token);
    }

    /// <summary>
    /// Starts a separate kumo-agent with its own state dir and declared capacity. An agent without a certificate in its
    /// state dir joins with a fresh token and kumod's CA file, as an admin would set up a new machine.
    /// </summary>
    public Task<DaemonProcess> StartAgentAsync(string name, int cpus = 2, string memory = "2G", params string[] extra) =>
        StartAgentInAsync(null, name, cpus, memory, extra);

    /// <summary>As <see cref="StartAgentAsync"/>, inside network namespace <paramref name="netns"/> (its guests, taps and bridges too).</summary>
    public async Task<DaemonProcess> StartAgentInAsync(string? netns, string name, int cpus = 2, string memory = "2G", params string[] extra)
    {
        var args = new List<string>
        {
            "--server", AgentUrl,
            "--node-name", name,
            "--state-dir", AgentStateDir(name),
            "--images-dir", ImagesDir,
            "--capacity-cpus", cpus.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--capacity-memory", memory,
            "--accel", "tcg",
            "--stop-grace-seconds", "20",
        };
        args.AddRange(extra);
        if (!File.Exists(Path.Combine(AgentStateDir(name), "pki", "node.crt")) && !extra.Contains("--join-token"))
            args.AddRange(["--join-token", (await Api.CreateNodeTokenAsync()).Token, "--ca", CaPath]);
        var agent = DaemonProcess.Start(Repo.AgentDll, args, netns);
        _agents.Add(agent);
        await WaitUntilAsync(async () =>
        {
            if (agent.HasExited) throw new InvalidOperationException($"kumo-agent {name} exited:\n" + agent.Log);
            return (await Api.NodesAsync()).Any(n => n.Name == name && n.State == NodeStates.Ready);
        }, TimeSpan.FromSeconds(60), $"node {name} to be ready");
        return agent;
    }

    public string AgentStateDir(string name) => Path.Combine(StateDir, "agent-" + name);

    /// <summary>Users' storage dirs (what ~/.kumo-data is on a real node), inside the test's state dir.</summary>
    public string UserDataDir => Path.Combine(StateDir, "kumo-data");

    /// <summary>Creates a user with a password and returns a bearer token for them.</summary>
    public async Task<string> AddUserAsync(string name)
    {
        var password = $"{name} password {Guid.NewGuid():n}";
        using (var created = await Api.Http.PostAsync("/api/v1/users", System.Net.Http.Json.JsonContent.Create(new UsersPost { Name = name, Password = password })))
            created.EnsureSuccessStatusCode();
        using var r = await Api.Http.PostAsync("/api/v1/auth/login", System.Net.Http.Json.JsonContent.Create(new LoginRequest { Username = name, Password = password }));
        r.EnsureSuccessStatusCode();
        return (await System.Net.Http.Json.HttpContentJsonExtensions.ReadFromJsonAsync<LoginResponse>(r.Content, ApiClient.Json))!.Token;
    }

    /// <summary>Runs the real CLI with someone else's token (their personal project is the default).</summary>
    public async Task<CliResult> CliAsAsync(string token, params string[] args)
    {
        await EnsureCliTrustAsync();
        return await CliProcess.RunInAsync(CliHome, Url, new Dictionary<string, string?> { ["KUMO_TOKEN"] = token, ["KUMO_PROJECT"] = null }, null, args);
    }

    /// <summary>
    /// Containers run under conmon, outside every process the test started: remove them (and any podman service left
    /// behind) from each agent's engine under the state dir.
    /// </summary>
    public async Task RemoveContainersAsync()
    {
        if (!Directory.Exists(StateDir)) return;
        foreach (var agentDir in Directory.GetDirectories(StateDir).Where(d => Directory.Exists(Path.Combine(d, "containers", "storage"))))
        {
            await using var engine = new Kumo.Agent.Containers.ContainerEngine(agentDir, Microsoft.Extensions.Logging.Abstractions.NullLogger<Kumo.Agent.Containers.ContainerEngine>.Instance);
            await engine.PodmanAsync(["rm", "--all", "--force", "--time", "0"], CancellationToken.None);
            var pidFile = Path.Combine(engine.Dir, "podman.pid");
            if (File.Exists(pidFile) && int.TryParse(await File.ReadAllTextAsync(pidFile), out var pid))
            {
                try
                {
                    using var p = System.Diagnostics.Process.GetProcessById(pid);
                    if (p.ProcessName == "podman") p.Kill();
                }
                catch (ArgumentException)
                {
                }
            }
        }
    }

    /// <summary>Starts a kumo-agent and leaves waiting to the test (for agents expected to fail or be refused).</summary>
    public DaemonProcess StartAgentProcess(string name, params string[] extra)
    {
        var args = new List<string>
        {
            "--server", AgentUrl, "--node-name", name, "--state-dir", AgentStateDir(name), "--images-dir", ImagesDir,
            "--capacity-cpus", "1", "--capacity-memory", "1G", "--accel", "tcg",
        };
        args.AddRange(extra);
        var agent = DaemonProcess.Start(Repo.AgentDll, args);
        _agents.Add(agent);
        return agent;
    }

    /// <summary>Runs the real `kumo` CLI as the test's user, who trusts this kumod's CA (pinned with `kumo config trust --ca`).</summary>
    public async Task<CliResult> CliAsync(params string[] args)
    {
        await EnsureCliTrustAsync();
        return await CliProcess.RunInAsync(CliHome, Url, new Dictionary<string, string?> { ["KUMO_TOKEN"] = Token }, null, args);
    }

    private async Task EnsureCliTrustAsync()
    {
        if (!_cliTrusts && !_insecureHttp)
        {
            Directory.CreateDirectory(CliHome);
            var trust = await CliProcess.RunInAsync(CliHome, Url, "config", "trust", "--ca", CaPath);
            if (trust.ExitCode != 0) throw new InvalidOperationException($"kumo config trust failed: {trust.Err}");
            _cliTrusts = true;
        }
    }

    public List<int> QemuPids() => Repo.QemuPids(StateDir);

    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(100);
        }
    }

    /// <summary>Creates an instance and waits for its operation; returns the final operation.</summary>
    public async Task<Operation> CreateAsync(string name, object? extra = null, TimeSpan? timeout = null)
    {
        var body = new Dictionary<string, object?> { ["name"] = name, ["image"] = "tiny", ["cpus"] = 1, ["memory"] = "128M", ["disk"] = "64M" };
        if (extra is not null)
        {
            foreach (var p in extra.GetType().GetProperties()) body[p.Name] = p.GetValue(extra);
        }
        var (status, op, problem) = await Api.CreateAsync(body);
        if (op is null) throw new InvalidOperationException($"create {name} failed: {(int)status} {problem?.Type} {problem?.Detail}");
        return await Api.WaitAsync(op, timeout);
    }

    public async Task<Operation> DoAsync(string name, string action)
    {
        var (status, op, problem) = await Api.ActAsync(name, action);
        if (op is null) throw new InvalidOperationException($"{action} {name} failed: {(int)status} {problem?.Type} {problem?.Detail}");
        return await Api.WaitAsync(op);
    }

    public string Diagnostics() => $"kumod log:\n{Server?.Log}\n" + string.Join("\n", _agents.Select(a => "agent log:\n" + a.Log));

    public async ValueTask DisposeAsync()
    {
        foreach (var a in _agents) a.Dispose();
        Server?.Dispose();
        Repo.KillQemu(StateDir);
        await RemoveContainersAsync();
        Api?.Dispose();
        await Task.Delay(50);
        try
        {
            Directory.Delete(StateDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
