using Dapper;
using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Storage;

namespace Kumo.Server.Monitoring;

/// <summary>An instance as the metrics views label it.</summary>
public sealed record MonitoredInstance(string Id, string Name, string Project, string? Owner, string? NodeId, string? Node, string State, int Cpus, long MemoryBytes);

/// <summary>
/// The read side of monitoring: which series a caller may see, and the JSON views. Admins see every instance; other
/// users see the instances of the projects they belong to (the same ones GET /instances shows them). Node series are
/// shown to every logged-in user, as GET /nodes shows nodes to everyone.
/// </summary>
public sealed class MetricsService(Database db, MetricsStore store, NodeService nodes, UserService users, TimeProvider time)
{
    public MetricsStore Store => store;

    public async Task<List<MonitoredInstance>> VisibleInstancesAsync(Caller caller, CancellationToken ct)
    {
        var all = await db.ReadAsync(c => c.Query<(string Id, string Name, string Project, string? Owner, string? NodeId, string? Node, string State, long Cpus, long MemoryBytes)>(
            """
            SELECT i.id, i.name, i.project, u.name, i.node_id, n.name, i.state, i.cpus, i.memory_bytes
            FROM instances i LEFT JOIN users u ON u.id = i.owner_id LEFT JOIN nodes n ON n.id = i.node_id
            ORDER BY i.project, i.name
            """).ToList(), ct);
        var mine = caller.IsAdmin ? null : await users.ProjectsOfAsync(caller.UserId!, ct);
        return all.Where(r => mine is null || mine.Contains(r.Project))
            .Select(r => new MonitoredInstance(r.Id, r.Name, r.Project, r.Owner, r.NodeId, r.Node, r.State, (int)r.Cpus, r.MemoryBytes))
            .ToList();
    }

    public async Task<MetricsSummary> SummaryAsync(Caller caller, CancellationToken ct)
    {
        var instances = await VisibleInstancesAsync(caller, ct);
        return new MetricsSummary
        {
            At = time.GetUtcNow(),
            Nodes = await nodes.ListAsync(ct),
            Instances = instances.Select(i => new InstanceMetricsSummary
            {
                Name = i.Name,
                Project = i.Project,
                Owner = i.Owner,
                Node = i.Node,
                State = i.State,
                Cpus = i.Cpus,
                MemoryBytes = i.MemoryBytes,
                Latest = store.LatestView(i.Id),
            }).ToList(),
        };
    }

    /// <remarks>The project has been resolved for the caller (membership checked), as for GET /instances/{name}.</remarks>
    public async Task<InstanceMetrics> InstanceAsync(string project, string name, CancellationToken ct)
    {
        var row = await db.ReadAsync(c => c.QuerySingleOrDefault<(string Id, string? NodeId, string? Node)>(
            "SELECT i.id, i.node_id, n.name FROM instances i LEFT JOIN nodes n ON n.id = i.node_id WHERE i.project = @project AND i.name = @name",
            new { project, name }), ct);
        if (row.Id is null) throw ProblemException.NotFound("instance", name);
        return new InstanceMetrics
        {
            Instance = name,
            Project = project,
            Node = row.Node,
            IntervalSeconds = row.NodeId is null ? 0 : store.IntervalOf(row.NodeId)?.TotalSeconds ?? 0,
            HistorySeconds = store.Options.History.TotalSeconds,
            Samples = store.InstanceView(row.Id),
        };
    }
}
