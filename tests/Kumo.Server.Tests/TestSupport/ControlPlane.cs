using Kumo.Core;
using Kumo.Server.Agents;
using Kumo.Server.Identity;
using Kumo.Server.Images;
using Kumo.Server.Instances;
using Kumo.Server.Operations;
using Kumo.Server.Scheduling;
using Kumo.Server.Storage;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Tests.TestSupport;

/// <summary>The store and the services that place instances, wired by hand without a web host or agents.</summary>
public sealed class ControlPlane : IAsyncDisposable
{
    private readonly TempDirectory _dir = new();

    private ControlPlane(SchedulerOptions scheduler, TimeProvider time)
    {
        Time = time;
        Database = new Database(_dir.File("kumo.db"));
        Scheduler = new Scheduler(Options.Create(scheduler));
        Scheduler.Load(Database);
        var signals = new NodeSignals();
        Operations = new OperationStore(Database, new OperationHub(), time);
        Quotas = new QuotaService(Database, Options.Create(new QuotaDefaults()));
        Instances = new InstanceService(Database, Scheduler, Operations, signals, Quotas, Options.Create(new InstanceDefaults()), time,
            new Kumo.Server.Networking.NetworkService(Database, time));
        Nodes = new NodeService(Database, Scheduler, Instances, signals, Options.Create(new NodeHealthOptions()), time);
    }

    public TimeProvider Time { get; }
    public Database Database { get; }
    public Scheduler Scheduler { get; }
    public OperationStore Operations { get; }
    public InstanceService Instances { get; }
    public QuotaService Quotas { get; }

    /// <summary>An administrator (no default quota) acting in the shared 'default' project.</summary>
    public static readonly Caller Admin = new("test-admin", "admin", Roles.Admin, "test");

    public const string Project = InstanceService.DefaultProject;
    public NodeService Nodes { get; }

    public static async Task<ControlPlane> StartAsync(SchedulerOptions? scheduler = null, TimeProvider? time = null)
    {
        var plane = new ControlPlane(scheduler ?? new SchedulerOptions(), time ?? TimeProvider.System);
        await new ImageService(plane.Database, new Kumo.Server.Images.ImageStorage(plane._dir.Path), plane.Time).EnsureBuiltInsAsync(CancellationToken.None);
        return plane;
    }

    public Task<string> AddNodeAsync(string name, int cpus = 4, string memory = "4G", IReadOnlyDictionary<string, string>? labels = null) =>
        Nodes.RegisterAsync(name, cpus, ByteSize.Parse(memory), "kvm", labels ?? new Dictionary<string, string>(), "test", CancellationToken.None);

    /// <summary>Creates an instance and returns the name of the node it was placed on.</summary>
    public async Task<string> PlaceAsync(string name, string memory = "256M", int cpus = 1, string? node = null,
        IReadOnlyDictionary<string, string>? nodeSelector = null)
    {
        await Instances.CreateAsync(Admin, Project, new InstancesPost { Name = name, Memory = memory, Cpus = cpus, Node = node, NodeSelector = nodeSelector },
            CancellationToken.None);
        return (await Instances.GetAsync(Project, name, CancellationToken.None)).Node!;
    }

    public async ValueTask DisposeAsync()
    {
        await Database.DisposeAsync();
        _dir.Dispose();
    }
}
