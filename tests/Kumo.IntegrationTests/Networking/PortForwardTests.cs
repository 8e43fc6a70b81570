using System.Net.Http.Json;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Networking;

/// <summary>
/// NAT and port forwards against a real outside: a namespace joined to the node by a veth (see <see cref="OutsideNamespace"/>).
/// Two TCG guests: one on a NAT network serving a token over HTTP, one on a network without NAT.
/// </summary>
[Trait("Category", "Slow")]
public sealed class PortForwardTests : IAsyncLifetime
{
    private KumoEnvironment _env = null!;
    private OutsideNamespace _outside = null!;
    private string? _table;
    private readonly string _www = Path.Combine(Path.GetTempPath(), $"kumo-outside-www-{Guid.NewGuid():N}");

    private string AgentDir => Path.Combine(_env.StateDir, "agent");

    public async Task InitializeAsync()
    {
        _env = await KumoEnvironment.StartAsync();
        _outside = await OutsideNamespace.CreateAsync();
    }

    public async Task DisposeAsync()
    {
        try
        {
            await _outside.DisposeAsync();
            await NetworkHost.CleanUpAsync(AgentDir, _table);
        }
        finally
        {
            await _env.DisposeAsync();
            if (Directory.Exists(_www)) Directory.Delete(_www, recursive: true);
        }
    }

    [Fact]
    public async Task ForwardReachesTheGuestFromOutside_UntilRemoved_AndNatLetsOnlyTheNatNetworkOut()
    {
        var node = (await _env.Api.NodesAsync()).Single(n => n.Name == "local");
        _table = NetworkHost.TableOf(node.Id);
        await CreateNetworkAsync(new NetworksPost { Name = "lan", Subnet = "10.215.0.0/24", Nat = true });
        await CreateNetworkAsync(new NetworksPost { Name = "closed", Subnet = "10.216.0.0/24" });
        foreach (var (vm, network) in new[] { ("web", "lan"), ("shut", "closed") })
        {
            var op = await _env.CreateAsync(vm, new { network });
            Assert.True(op.Status == OperationStatuses.Succeeded, $"{vm}: {op.Error}\n{_env.Diagnostics()}");
        }
        var web = (await _env.Api.GetAsync("web"))!;
        var shut = (await _env.Api.GetAsync("shut"))!;
        await NetworkHost.WaitForAddressAsync(_env, web);
        await NetworkHost.WaitForAddressAsync(_env, shut);

        // A service in the guest with a token only this run knows.
        var token = Guid.NewGuid().ToString("N");
        await NetworkHost.GuestRunAsync(_env, web, $"mkdir -p /tmp/www && echo {token} > /tmp/www/t && httpd -p 8080 -h /tmp/www && echo started");

        var add = await _env.CliAsync("port-forward", "add", "web", "--public", "2222", "--to", "8080");
        Assert.True(add.ExitCode == 0, add.Err);
        Assert.Contains($"port 2222/tcp -> {web.Nics[0].Address}:8080", add.Out, StringComparison.Ordinal);
        var list = await _env.CliAsync("port-forward", "list");
        Assert.Contains("2222/tcp", list.Out, StringComparison.Ordinal);

        var url = $"http://{OutsideNamespace.NodeAddress}:2222/t";
        var last = "";
        await KumoEnvironment.WaitUntilAsync(async () => (last = (await _outside.RunAsync("curl", "-s", "--max-time", "5", url)).Output).Contains(token, StringComparison.Ordinal),
            TimeSpan.FromSeconds(60), $"the outside namespace to reach the guest through node port 2222 (last: {last})");

        // NAT: the NAT network's guest reaches a server in the outside namespace; the closed network's guest does not.
        var outsideToken = Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(_www);
        await File.WriteAllTextAsync(Path.Combine(_www, "t"), outsideToken + "\n");
        _outside.Start("busybox", "httpd", "-f", "-p", $"{OutsideNamespace.Address}:8081", "-h", _www);
        // busybox-static's wget segfaults on Debian 12 (even on loopback); nc speaks the HTTP request instead.
        var fetch = $"printf 'GET /t HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {OutsideNamespace.Address} 8081";
        await KumoEnvironment.WaitUntilAsync(async () => (last = await NetworkHost.GuestRunAsync(_env, web, fetch)).Contains(outsideToken, StringComparison.Ordinal),
            TimeSpan.FromSeconds(60), $"the NAT guest to fetch {outsideToken} from the outside (guest token {token}; last: {last.ReplaceLineEndings("|")})");
        var closed = await NetworkHost.GuestRunAsync(_env, shut, $"ip route add default via 10.216.0.1; {fetch}; echo exit=$?");
        Assert.DoesNotContain(outsideToken, closed, StringComparison.Ordinal);
        Assert.Contains("exit=1", closed, StringComparison.Ordinal);

        var rm = await _env.CliAsync("port-forward", "rm", "web", "--public", "2222");
        Assert.True(rm.ExitCode == 0, rm.Err);
        await KumoEnvironment.WaitUntilAsync(async () => (await _outside.RunAsync("curl", "-s", "--max-time", "5", url)).ExitCode != 0,
            TimeSpan.FromSeconds(60), "node port 2222 to stop answering after the forward was removed");
        Assert.DoesNotContain(token, (await _outside.RunAsync("curl", "-s", "--max-time", "5", url)).Output, StringComparison.Ordinal);

        // Bad input from the CLI: one readable line, non-zero exit, nothing added.
        var bad = await _env.CliAsync("port-forward", "add", "shut", "--public", "80", "--to", "22");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("outside the forward range", bad.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("2222", (await _env.CliAsync("port-forward", "list")).Out, StringComparison.Ordinal);
    }

    private async Task CreateNetworkAsync(NetworksPost body)
    {
        using var r = await _env.Api.Http.PostAsJsonAsync("/api/v1/networks", body, ApiClient.Json);
        Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
    }
}
