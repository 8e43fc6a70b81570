using Dapper;
using Kumo.Core;
using Kumo.Server.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Yarp.ReverseProxy.Configuration;

namespace Kumo.Server.Proxy;

/// <summary>
/// Keeps the proxy's routes equal to the running containers in the database: a short reconcile loop re-reads them
/// and swaps YARP's in-memory configuration only when the set changed. Reading the database (not listening for
/// events) means no missed or reordered event can leave a stale route; a route follows its container within one
/// <see cref="ProxyOptions.RefreshInterval"/>.
/// </summary>
public sealed partial class ProxyRouteTable(Database db, IOptions<ProxyOptions> options, TimeProvider time, ILogger<ProxyRouteTable> logger)
    : BackgroundService
{
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private IReadOnlyList<ContainerRoute> _current = [];

    /// <summary>What YARP serves; the proxy host registers it as its <see cref="IProxyConfigProvider"/>.</summary>
    public InMemoryConfigProvider Provider { get; } = new([], []);

    /// <summary>The routes being served now.</summary>
    public IReadOnlyList<ContainerRoute> Current => Volatile.Read(ref _current);

    /// <summary>Re-reads the running containers and swaps the routes if they changed; true when they did.</summary>
    public async Task<bool> RefreshAsync(CancellationToken ct)
    {
        // One at a time, so an older read can never overwrite a newer one.
        await _refresh.WaitAsync(ct);
        try
        {
            var wanted = await db.ReadAsync(c => Read(c), ct);
            if (wanted.SequenceEqual(Current)) return false;
            var (routes, clusters) = ContainerRoutes.Build(wanted, options.Value.Domain);
            Provider.Update(routes, clusters);
            Volatile.Write(ref _current, wanted);
            LogRoutes(wanted.Count);
            return true;
        }
        finally
        {
            _refresh.Release();
        }
    }

    public override void Dispose()
    {
        _refresh.Dispose();
        base.Dispose();
    }

    /// <summary>
    /// Running containers with a published port, oldest first. Names are unique per project, not per owner, so two
    /// of one owner's projects may hold the same name: the older container keeps the route.
    /// </summary>
    private static List<ContainerRoute> Read(Microsoft.Data.Sqlite.SqliteConnection c)
    {
        var rows = c.Query<(string Id, string Project, string Owner, string Name, string Container)>(
            """
            SELECT i.id, i.project, u.name, i.name, i.container FROM instances i JOIN users u ON u.id = i.owner_id
            WHERE i.type = @type AND i.state = @running AND i.desired_power = @running AND i.container IS NOT NULL
            ORDER BY i.created_at, i.id
            """, new { type = InstanceTypes.Container, running = InstanceStates.Running });
        var seen = new HashSet<(string, string)>();
        var result = new List<ContainerRoute>();
        foreach (var r in rows)
        {
            // User names from an external directory need not be host labels; such a user's containers get no route.
            if (!Names.IsValid(r.Owner) || Json.Container(r.Container) is not { Ports: [var first, ..] } || !seen.Add((r.Owner, r.Name))) continue;
            result.Add(new ContainerRoute(r.Id, r.Project, r.Owner, r.Name, new Uri($"http://{Address(first.HostIp)}:{first.HostPort}/")));
        }
        return result;
    }

    /// <summary>Ports are published on the node's loopback; an IPv6 address needs brackets in a URL.</summary>
    private static string Address(string hostIp) => hostIp.Contains(':', StringComparison.Ordinal) ? $"[{hostIp}]" : hostIp;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.RefreshInterval, time);
        try
        {
            do
            {
                try
                {
                    await RefreshAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogRefreshFailed(e);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(LogLevel.Information, "proxy: {Count} container route(s)")]
    private partial void LogRoutes(int count);

    [LoggerMessage(LogLevel.Error, "proxy: reading the running containers failed; the routes stay as they were")]
    private partial void LogRefreshFailed(Exception e);
}
