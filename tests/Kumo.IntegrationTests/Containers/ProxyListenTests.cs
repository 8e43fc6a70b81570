using System.Net;
using System.Net.Sockets;
using Kumo.IntegrationTests.Infrastructure;

namespace Kumo.IntegrationTests.Containers;

/// <summary>kumod's proxy options on the real command line: bad values and a taken port stop kumod with one readable line.</summary>
public sealed class ProxyListenTests
{
    private static async Task<(int ExitCode, string Log)> RunKumodAsync(params string[] extra)
    {
        var stateDir = Path.Combine(Path.GetTempPath(), "kumo-it-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            using var kumod = DaemonProcess.Start(Repo.KumodDll,
                ["--state-dir", stateDir, "--listen", $"127.0.0.1:{DaemonProcess.FreePort()}", "--agent-listen", $"127.0.0.1:{DaemonProcess.FreePort()}", .. extra]);
            Assert.True(await kumod.WaitForExitAsync(TimeSpan.FromSeconds(60)), "kumod kept running:\n" + kumod.Log);
            return (kumod.ExitCode, kumod.Log);
        }
        finally
        {
            if (Directory.Exists(stateDir)) Directory.Delete(stateDir, recursive: true);
        }
    }

    [Theory]
    [InlineData("--proxy-listen", "7480", "error: --proxy-listen takes IP:PORT (e.g. 127.0.0.1:7480) or off")]
    [InlineData("--proxy-listen", "localhost:7480", "error: --proxy-listen takes IP:PORT (e.g. 127.0.0.1:7480) or off")]
    [InlineData("--proxy-listen", "127.0.0.1:99999", "error: --proxy-listen takes IP:PORT (e.g. 127.0.0.1:7480) or off")]
    [InlineData("--proxy-domain", "not a domain", "error: --proxy-domain 'not a domain' is not a DNS name")]
    public async Task BadProxyOption_ExitsWithOneReadableLine(string option, string value, string expected)
    {
        var (exitCode, log) = await RunKumodAsync(option, value);

        Assert.Equal(1, exitCode);
        Assert.Contains(expected, log);
    }

    [Fact]
    public async Task ProxyPortTaken_ExitsSayingItCannotListen()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var (exitCode, log) = await RunKumodAsync("--proxy-listen", $"127.0.0.1:{port}");

        Assert.Equal(1, exitCode);
        Assert.Contains("error: cannot listen", log);
        Assert.Contains(port.ToString(System.Globalization.CultureInfo.InvariantCulture), log);
    }
}
