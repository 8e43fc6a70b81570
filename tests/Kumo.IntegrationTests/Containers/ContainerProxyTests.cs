using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Containers;

/// <summary>
/// kumod's reverse proxy in front of real containers: real kumod with its agent, real podman (runc), busybox httpd and
/// a busybox WebSocket echo server, reached through the proxy port by host name and by /u/USER/NAME/ path.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ContainerProxyTests(ContainerKumo fixture) : IClassFixture<ContainerKumo>
{
    private KumoEnvironment Env => fixture.Env;

    private Task<CliResult> Alice(params string[] args) => Env.CliAsAsync(fixture.Alice, args);

    private void Ok(CliResult r) => Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}\nstdout: {r.Out}\nstderr: {r.Err}\n{Env.Diagnostics()}");

    private string Proxy => $"http://127.0.0.1:{Env.ProxyPort}";

    private static HttpClient Client() => new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>GET through the proxy, optionally as host <paramref name="host"/>: status, content type and body.</summary>
    private async Task<(HttpStatusCode Status, string? Type, string Body)> GetAsync(HttpClient http, string path, string? host = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Proxy + path);
        if (host is not null) request.Headers.Host = host;
        using var response = await http.SendAsync(request);
        return (response.StatusCode, response.Content.Headers.ContentType?.MediaType, await response.Content.ReadAsStringAsync());
    }

    private async Task<(HttpStatusCode Status, string? Type, string Body)> EventuallyAsync(HttpClient http, string path, string? host,
        Func<(HttpStatusCode Status, string? Type, string Body), bool> condition, string what) =>
        await ApiClient.EventuallyAsync(() => GetAsync(http, path, host), condition, TimeSpan.FromSeconds(60), what);

    private async Task<Instance> AsAsync(string token, string name)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/instances/{name}");
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        using var response = await Env.Api.Http.SendAsync(request);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<Instance>(ApiClient.Json))!;
    }

    [Fact]
    public async Task Route_ServesTheTokenInTheContainer_ByHostAndByPath_AndAfterRmAnswers404AndFreesThePort()
    {
        var token = Guid.NewGuid().ToString("n");
        var run = await Alice("ct", "run", "site", "-p", "8080", "-m", "64M", "-e", $"TOKEN={token}",
            "--", "sh", "-c", "mkdir -p /www && echo $TOKEN > /www/index.html && exec httpd -f -p 8080 -h /www");
        Ok(run);
        var hostUrl = $"http://site.alice.localhost:{Env.ProxyPort}/";
        var pathUrl = $"http://localhost:{Env.ProxyPort}/u/alice/site/";
        Assert.Contains(hostUrl, run.Out);
        Assert.Contains(pathUrl, run.Out);
        var site = await AsAsync(fixture.Alice, "site");
        Assert.Equal("alice", site.Owner);
        Assert.Equal([hostUrl, pathUrl], site.Urls);
        var hostPort = Assert.Single(site.Container!.Ports).HostPort;

        using var http = Client();
        var byHost = await EventuallyAsync(http, "/", "site.alice.localhost", r => r.Status == HttpStatusCode.OK, "the host route to serve the container");
        Assert.Equal(token + "\n", byHost.Body);
        var byPath = await EventuallyAsync(http, "/u/alice/site/index.html", null, r => r.Status == HttpStatusCode.OK, "the path route to serve the container");
        Assert.Equal(token + "\n", byPath.Body);
        // Without the trailing slash the app's relative links would resolve outside its prefix.
        using (var bare = await http.GetAsync(Proxy + "/u/alice/site"))
        {
            Assert.Equal(HttpStatusCode.PermanentRedirect, bare.StatusCode);
            Assert.Equal("/u/alice/site/", bare.Headers.Location?.OriginalString);
        }
        // Another user's name under the same container name is not a route.
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(http, "/", "site.bob.localhost")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(http, "/u/bob/site/")).Status);

        // Operators see every route; users do not.
        var routes = await Env.Api.Http.GetFromJsonAsync<List<ProxyRoute>>("/api/v1/proxy/routes", ApiClient.Json);
        var route = Assert.Single(routes!, r => r.Owner == "alice" && r.Name == "site");
        Assert.Equal($"http://127.0.0.1:{hostPort}/", route.Destination);
        using (var asAlice = new HttpRequestMessage(HttpMethod.Get, "/api/v1/proxy/routes"))
        {
            asAlice.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fixture.Alice);
            using var refused = await Env.Api.Http.SendAsync(asAlice);
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        Ok(await Alice("ct", "rm", "site", "--force"));
        var gone = await EventuallyAsync(http, "/", "site.alice.localhost", r => r.Status == HttpStatusCode.NotFound, "the host route to go away");
        Assert.Equal("application/problem+json", gone.Type);
        Assert.Contains("no running container answers", gone.Body);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(http, "/u/alice/site/index.html")).Status);

        // The host port is free again: the next container gets the same lowest free port of the pool.
        Ok(await Alice("ct", "run", "site2", "-p", "8080", "--", "sleep", "600"));
        Assert.Equal(hostPort, Assert.Single((await AsAsync(fixture.Alice, "site2")).Container!.Ports).HostPort);
        Ok(await Alice("ct", "rm", "site2", "--force"));
    }

    [Fact]
    public async Task Route_FollowsStopAndStart()
    {
        var token = Guid.NewGuid().ToString("n");
        Ok(await Alice("ct", "run", "toggle", "-p", "8080", "-e", $"TOKEN={token}",
            "--", "sh", "-c", "mkdir -p /www && echo $TOKEN > /www/index.html && exec httpd -f -p 8080 -h /www"));
        using var http = Client();
        Assert.Equal(token + "\n", (await EventuallyAsync(http, "/", "toggle.alice.localhost", r => r.Status == HttpStatusCode.OK, "the route")).Body);

        Ok(await Alice("ct", "stop", "toggle"));
        await EventuallyAsync(http, "/", "toggle.alice.localhost", r => r.Status == HttpStatusCode.NotFound, "the route to go away on stop");

        Ok(await Alice("ct", "start", "toggle"));
        Assert.Equal(token + "\n", (await EventuallyAsync(http, "/", "toggle.alice.localhost", r => r.Status == HttpStatusCode.OK, "the route to come back on start")).Body);
        Ok(await Alice("ct", "rm", "toggle", "--force"));
    }

    [Fact]
    public async Task WebSocket_PassesThroughTheProxy_BothWays()
    {
        // A WebSocket echo server in busybox sh (nc -ll runs the script per connection), mounted from alice's storage dir.
        var dir = Path.Combine(Env.UserDataDir, "alice", "ws");
        Directory.CreateDirectory(dir);
        var script = Path.Combine(dir, "echo.sh");
        await File.WriteAllTextAsync(script, EchoScript);
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        Ok(await Alice("ct", "run", "echo", "-p", "8080", "-v", "ws:/ws:ro", "--", "nc", "-ll", "-p", "8080", "-e", "/ws/echo.sh"));

        var messages = new[] { "hello " + Guid.NewGuid().ToString("n"), "again " + Guid.NewGuid().ToString("n") };
        var echoed = await ApiClient.EventuallyAsync(async () =>
        {
            using var ws = new ClientWebSocket();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try
            {
                await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{Env.ProxyPort}/u/alice/echo/"), cts.Token);
            }
            catch (WebSocketException)
            {
                return [];
            }
            var got = new List<string>();
            foreach (var m in messages)
            {
                await ws.SendAsync(Encoding.UTF8.GetBytes(m), WebSocketMessageType.Text, true, cts.Token);
                var buffer = new byte[256];
                var r = await ws.ReceiveAsync(buffer, cts.Token);
                got.Add(Encoding.UTF8.GetString(buffer, 0, r.Count));
            }
            await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "done", cts.Token);
            return got;
        }, got => got.Count > 0, TimeSpan.FromSeconds(60), "a WebSocket session through the proxy");
        Assert.Equal(messages, echoed);
        Ok(await Alice("ct", "rm", "echo", "--force"));
    }

    /// <summary>
    /// A WebSocket server for one connection on stdin/stdout, in busybox sh: the RFC 6455 handshake, then each masked
    /// text frame (payload under 126 bytes) echoed back unmasked.
    /// </summary>
    private const string EchoScript = """
        #!/bin/sh
        key=""
        while IFS= read -r line; do
          line=$(printf '%s' "$line" | tr -d '\r')
          [ -z "$line" ] && break
          case "$line" in [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$(printf '%s' "${line#*:}" | tr -d ' ') ;; esac
        done
        digest=""
        for h in $(printf '%s' "${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11" | sha1sum | cut -c1-40 | sed 's/../& /g'); do
          digest="$digest\\$(printf '%03o' $((0x$h)))"
        done
        accept=$(printf "$digest" | base64)
        printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
        while true; do
          set -- $(dd bs=1 count=2 2>/dev/null | od -An -tu1)
          [ $# -eq 2 ] || exit 0
          op=$(($1 & 15)); len=$(($2 & 127))
          set -- $(dd bs=1 count=$((4 + len)) 2>/dev/null | od -An -tu1 -v)
          m0=$1; m1=$2; m2=$3; m3=$4; shift 4
          [ $op -eq 8 ] && { printf '\210\000'; exit 0; }
          i=0; payload=""
          for b; do
            eval "m=\$m$((i % 4))"
            payload="$payload\\$(printf '%03o' $((b ^ m)))"
            i=$((i + 1))
          done
          printf "\\201\\$(printf '%03o' $len)$payload"
        done

        """;
}
