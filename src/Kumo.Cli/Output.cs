using System.Globalization;
using System.Text.Json;
using Kumo.Client;
using Kumo.Core;
using Spectre.Console;
using Spectre.Console.Rendering;
using YamlDotNet.Serialization;

namespace Kumo.Cli;

internal enum OutputFormat
{
    Table,
    Json,
    Yaml,

    /// <summary>Comma-separated values; only commands that say so (kumo usage) print it.</summary>
    Csv,
}

/// <summary>
/// Everything the CLI prints goes through here: results as table, JSON or YAML on stdout, progress, and
/// errors as one readable line on stderr. Human output shows sizes as 256M and times in local time;
/// JSON and YAML keep the wire form.
/// </summary>
internal sealed partial class Output
{
    public static readonly string[] FormatNames = ["table", "json", "yaml", "csv"];

    private static readonly JsonSerializerOptions PrettyJson = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    private readonly CliEnvironment _env;

    public Output(CliEnvironment env, OutputFormat format)
    {
        _env = env;
        Format = format;
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(env.Out),
            Ansi = env.IsTerminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = env.IsTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = env.IsInteractive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        // Piped output should not wrap at 80 columns: greppable rows matter more than the width.
        if (!env.IsTerminal)
            Console.Profile.Width = 240;
    }

    public OutputFormat Format { get; }

    public IAnsiConsole Console { get; }

    public static OutputFormat ParseFormat(string? name) => name?.ToLowerInvariant() switch
    {
        "json" => OutputFormat.Json,
        "yaml" => OutputFormat.Yaml,
        "csv" => OutputFormat.Csv,
        _ => OutputFormat.Table,
    };

    // ---- results

    /// <summary>Prints <paramref name="value"/> as JSON or YAML, or in table mode as <paramref name="human"/> renders it.</summary>
    public void Write<T>(T value, Func<T, IRenderable> human)
    {
        switch (Format)
        {
            case OutputFormat.Json:
                _env.Out.WriteLine(JsonSerializer.Serialize(value, PrettyJson));
                break;
            case OutputFormat.Yaml:
                _env.Out.Write(ToYaml(value));
                break;
            case OutputFormat.Csv:
                throw new UsageException("-o csv is only available for kumo usage; use table, json or yaml");
            default:
                Console.Write(human(value));
                break;
        }
    }

    public static string ToYaml<T>(T value)
    {
        // Through JSON so YAML has exactly the JSON keys and wire values (camelCase, RFC 3339 times).
        var element = JsonSerializer.SerializeToElement(value, PrettyJson);
        return new SerializerBuilder().WithQuotingNecessaryStrings().Build().Serialize(ToPlain(element));
    }

    private static object? ToPlain(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => element.EnumerateObject().ToDictionary(p => p.Name, p => ToPlain(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().Select(ToPlain).ToList(),
        JsonValueKind.String => element.GetString(),
        JsonValueKind.Number => element.TryGetInt64(out var n) ? n : element.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    // ---- building blocks for human output

    public Table Table(params string[] headers)
    {
        var table = new Table { Border = _env.IsTerminal ? TableBorder.Rounded : TableBorder.None };
        foreach (var header in headers)
        {
            var column = new TableColumn(new Text(header)) { NoWrap = true };
            // Without borders, columns flush left and two spaces apart, like other CLIs' plain listings.
            if (!_env.IsTerminal)
                column.Padding = new Padding(0, 0, 2, 0);
            table.AddColumn(column);
        }
        return table;
    }

    public static void AddRow(Table table, params string?[] cells) =>
        table.AddRow(cells.Select(c => (IRenderable)new Text(string.IsNullOrEmpty(c) ? "-" : c)).ToArray());

    /// <summary>Two columns of "Key:" and value, for the show commands.</summary>
    public static Grid Details(params (string Key, string? Value)[] rows)
    {
        var grid = new Grid();
        grid.AddColumn(new GridColumn { NoWrap = true });
        grid.AddColumn();
        foreach (var (key, value) in rows)
            grid.AddRow(new Text(key + ":"), new Text(string.IsNullOrEmpty(value) ? "-" : value));
        return grid;
    }

    public static IRenderable Line(string text) => new Text(text + "\n");

    public static string Time(DateTimeOffset? at) =>
        at is { } t && t != default ? t.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) : "-";

    public static string Size(long bytes) => ByteSize.Human(bytes);

    public static string Labels(IReadOnlyDictionary<string, string>? labels) =>
        labels is null || labels.Count == 0 ? "-" : string.Join(',', labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));

    // ---- views of the resources

    public IRenderable Nodes(IReadOnlyList<Node> nodes)
    {
        var table = Table("NAME", "STATE", "ACCEL", "CPUS", "MEMORY", "INSTANCES", "HEARTBEAT");
        foreach (var n in nodes)
        {
            AddRow(table, n.Name, n.State, n.Accelerator, $"{n.UsedCpus}/{n.Cpus}", $"{Size(n.UsedMemoryBytes)}/{Size(n.MemoryBytes)}",
                n.Instances.ToString(CultureInfo.InvariantCulture), Time(n.LastHeartbeat));
        }
        return table;
    }

    public static IRenderable Node(Node n) => Details(
        ("Name", n.Name),
        ("State", n.State),
        ("Accelerator", n.Accelerator),
        ("CPUs", $"{n.Cpus} ({n.UsedCpus} used, {n.FreeCpus} free)"),
        ("Memory", $"{Size(n.MemoryBytes)} ({Size(n.UsedMemoryBytes)} used, {Size(n.FreeMemoryBytes)} free)"),
        ("Instances", n.Instances.ToString(CultureInfo.InvariantCulture)),
        ("Labels", Labels(n.Labels)),
        ("Agent", n.AgentVersion),
        ("VXLAN", n.VxlanAddress ?? "off (networks stay on this node)"),
        ("Heartbeat", Time(n.LastHeartbeat)),
        ("Created", Time(n.CreatedAt)),
        ("Id", n.Id));

    public IRenderable Images(IReadOnlyList<Image> images)
    {
        var table = Table("NAME", "TYPE", "READINESS", "SIZE", "FORMAT", "BUILT-IN", "DESCRIPTION");
        foreach (var i in images)
        {
            AddRow(table, i.Name, i.Type, i.Readiness, i.VirtualSizeBytes is { } v ? Size(v) : null, i.SourceFormat,
                i.BuiltIn ? "yes" : "no", i.Description);
        }
        return table;
    }

    public static IRenderable Image(Image i) => Details(
        ("Name", i.Name),
        ("Type", i.Type),
        ("Project", i.Project),
        ("Readiness", i.Readiness),
        ("Built-in", i.BuiltIn ? "yes" : "no"),
        ("Description", i.Description),
        ("Disk size", i.VirtualSizeBytes is { } v ? Size(v) : null),
        ("Stored", i.SizeBytes is { } s ? Size(s) : null),
        ("Imported from", i.SourceFormat),
        ("SHA-256", i.Sha256),
        ("Node", i.Node),
        ("Created", Time(i.CreatedAt)),
        ("Id", i.Id));

    public IRenderable Networks(IReadOnlyList<Network> networks)
    {
        var table = Table("NAME", "SUBNET", "GATEWAY", "NAT", "DNS DOMAIN", "ADDRESSES");
        foreach (var n in networks)
            AddRow(table, n.Name, n.Subnet, n.Gateway, n.Nat ? "yes" : "no", n.DnsDomain, n.Addresses.Count.ToString(CultureInfo.InvariantCulture));
        return table;
    }

    public IRenderable Templates(IReadOnlyList<DomainTemplate> templates)
    {
        var table = Table("NAME", "DESCRIPTION", "BY", "CREATED");
        foreach (var t in templates)
            AddRow(table, t.Name, t.Description, t.CreatedBy, Time(t.CreatedAt));
        return table;
    }

    public IRenderable PortForwards(IReadOnlyList<PortForward> forwards)
    {
        var table = Table("INSTANCE", "PUBLIC", "TO", "NETWORK", "NODE");
        foreach (var f in forwards)
            AddRow(table, f.Instance, $"{f.PublicPort}/{f.Protocol}", $"{f.Address}:{f.Port}", f.Network, f.Node);
        return table;
    }

    public static IRenderable PortForwardLine(PortForward f) =>
        Line($"{f.Instance}: node{(f.Node is null ? "" : $" {f.Node}")} port {f.PublicPort}/{f.Protocol} -> {f.Address}:{f.Port}");

    public static IRenderable Network(Network n) => Details(
        ("Name", n.Name),
        ("Project", n.Project),
        ("Subnet", n.Subnet),
        ("Gateway", n.Gateway),
        ("NAT", n.Nat ? "yes" : "no"),
        ("DNS domain", n.DnsDomain),
        ("VXLAN VNI", n.Vni.ToString(CultureInfo.InvariantCulture)),
        ("Addresses", n.Addresses.Count == 0 ? "none" : string.Join(", ", n.Addresses.Select(a => $"{a.Address} {a.Instance} ({a.Mac})"))),
        ("Created", Time(n.CreatedAt)),
        ("Id", n.Id));

    public IRenderable Clusters(IReadOnlyList<Cluster> clusters)
    {
        var table = Table("NAME", "STATE", "NODES", "RUNNING", "FRONTEND", "PUBLIC PORT", "WINDOW");
        foreach (var c in clusters)
        {
            var frontend = c.Members.FirstOrDefault(m => m.Role == "frontend");
            AddRow(table, c.Name, c.State, c.Nodes.ToString(CultureInfo.InvariantCulture),
                $"{c.Members.Count(m => m.State == InstanceStates.Running)}/{c.Nodes + 1}",
                frontend is null ? null : $"{frontend.Name} {frontend.ExternalAddress}", c.PublicPort?.ToString(CultureInfo.InvariantCulture), Window(c.Start, c.End));
        }
        return table;
    }

    public static IRenderable Cluster(Cluster c)
    {
        var rows = new List<(string, string?)>
        {
            ("Name", c.Name),
            ("Project", c.Project),
            ("Owner", c.Owner),
            ("State", c.Message is null ? c.State : $"{c.State} ({c.Message})"),
            ("Frontend", $"{c.FrontendImage}, {c.FrontendCpus} vCPU, {Size(c.FrontendMemoryBytes)}"),
            ("Nodes", $"{c.Nodes} x {c.NodeImage}, {c.NodeCpus} vCPU, {Size(c.NodeMemoryBytes)}"),
            ("Private", $"{c.PrivateNetwork} {c.PrivateSubnet}"),
            ("External", c.ExternalNetwork),
            ("Public port", c.PublicPort is { } p ? $"node port {p} -> frontend port {c.ExposePort}" : null),
            ("Reservation", Window(c.Start, c.End)),
            ("Created", Time(c.CreatedAt)),
            ("Id", c.Id),
        };
        foreach (var m in c.Members)
            rows.Add(($"  {m.Name}", $"{m.Role}, {m.State}, node {m.Node ?? "-"}, private {m.PrivateAddress ?? "-"}" + (m.ExternalAddress is { } e ? $", external {e}" : "")
                + (m.Latest is { } l ? $", cpu {(l.CpuPercent is { } cpu ? cpu.ToString("0.#", CultureInfo.InvariantCulture) + "%" : "-")}, mem {Size(l.MemoryRssBytes)}" : "")));
        foreach (var e in c.Events.TakeLast(10))
            rows.Add(($"  {Time(e.At)}", $"{e.Kind}: {e.Message}"));
        return Details([.. rows]);
    }

    public IRenderable Reservations(IReadOnlyList<Reservation> reservations)
    {
        var table = Table("NAME", "KIND", "START", "END", "STATE", "NODE", "CPUS", "MEMORY");
        foreach (var r in reservations)
            AddRow(table, r.Name, r.Kind, Time(r.Start), Time(r.End), r.State, r.Node, r.Cpus.ToString(CultureInfo.InvariantCulture), Size(r.MemoryBytes));
        return table;
    }

    public static IRenderable Reservation(Reservation r)
    {
        var rows = new List<(string, string?)>
        {
            ("Name", r.Name),
            ("Kind", r.Kind),
            ("Project", r.Project),
            ("Owner", r.Owner),
            ("Window", Window(r.Start, r.End)),
            ("State", r.State),
            ("Node", r.Node),
            ("Holds", $"{r.Cpus} vCPU, {Size(r.MemoryBytes)}"),
        };
        foreach (var e in r.Events.TakeLast(10))
            rows.Add(($"  {Time(e.At)}", $"{e.Kind}: {e.Message}"));
        return Details([.. rows]);
    }

    private static string? Window(DateTimeOffset? start, DateTimeOffset? end) =>
        end is null ? null : $"{Time(start)} .. {Time(end)}";

    public IRenderable Instances(IReadOnlyList<Instance> instances)
    {
        var table = Table("NAME", "STATE", "NODE", "IMAGE", "CPUS", "MEMORY", "DISK", "CREATED");
        foreach (var i in instances)
        {
            AddRow(table, i.Name, i.State, i.Node, i.Image, i.Cpus.ToString(CultureInfo.InvariantCulture), Size(i.MemoryBytes),
                i.DiskBytes > 0 ? Size(i.DiskBytes) : null, Time(i.CreatedAt));
        }
        return table;
    }

    public static IRenderable Instance(Instance i) => Details(
        ("Name", i.Name),
        ("Type", i.Type),
        ("Project", i.Project),
        ("State", i.StatusMessage is null ? i.State : $"{i.State} ({i.StatusMessage})"),
        ("Desired", i.DesiredPower),
        ("Node", i.Node),
        ("Image", i.Image),
        ("Template", i.Template),
        ("CPUs", i.Cpus.ToString(CultureInfo.InvariantCulture)),
        ("Memory", Size(i.MemoryBytes)),
        ("Disk", i.DiskBytes > 0 ? Size(i.DiskBytes) : null),
        ("Labels", Labels(i.Labels)),
        ("Description", i.Description),
        ("Networks", i.Nics.Count == 0 ? null : string.Join(", ", i.Nics.Select(n => $"{n.Network} {n.Address} ({n.Mac})"))),
        ("Created", Time(i.CreatedAt)),
        ("Updated", Time(i.UpdatedAt)),
        ("Id", i.Id));

    public IRenderable Containers(IReadOnlyList<Instance> containers)
    {
        var table = Table("NAME", "STATE", "NODE", "IMAGE", "MEMORY", "PORTS", "STATUS");
        foreach (var i in containers)
        {
            AddRow(table, i.Name, i.State, i.Node, i.Image, Size(i.MemoryBytes), Ports(i.Container), i.StatusMessage);
        }
        return table;
    }

    public static IRenderable Container(Instance i) => Details(
        ("Name", i.Name),
        ("Project", i.Project),
        ("State", i.StatusMessage is null ? i.State : $"{i.State} ({i.StatusMessage})"),
        ("Desired", i.DesiredPower),
        ("Node", i.Node),
        ("Image", i.Image),
        ("Command", i.Container is { Command.Count: > 0 } c ? string.Join(' ', c.Command) : "(image default)"),
        ("CPUs", i.Container?.CpuLimit is { } limit ? $"{limit.ToString(CultureInfo.InvariantCulture)} (counted as {i.Cpus.ToString(CultureInfo.InvariantCulture)})" : i.Cpus.ToString(CultureInfo.InvariantCulture)),
        ("Memory limit", Size(i.MemoryBytes)),
        ("Ports", Ports(i.Container)),
        ("URLs", i.Urls is { Count: > 0 } u ? string.Join(", ", u) : null),
        ("Volumes", i.Container is { Volumes.Count: > 0 } v ? string.Join(", ", v.Volumes.Select(m => $"~/.kumo-data/USER/{m.Source}:{m.Target}{(m.ReadOnly ? ":ro" : "")}")) : null),
        ("Env", i.Container is { Env.Count: > 0 } e ? string.Join(", ", e.Env.Keys) : null),
        ("Labels", Labels(i.Labels)),
        ("Created", Time(i.CreatedAt)),
        ("Updated", Time(i.UpdatedAt)),
        ("Id", i.Id));

    private static string? Ports(ContainerSpec? spec) => spec is { Ports.Count: > 0 }
        ? string.Join(", ", spec.Ports.Select(p => $"{p.HostIp}:{p.HostPort.ToString(CultureInfo.InvariantCulture)}->{p.ContainerPort.ToString(CultureInfo.InvariantCulture)}"))
        : null;
    public IRenderable Snapshots(IReadOnlyList<Snapshot> snapshots)
    {
        var table = Table("NAME", "RAM", "STATE", "CREATED");
        foreach (var s in snapshots)
            AddRow(table, s.Name, s.Memory ? "yes" : "no", s.State, Time(s.CreatedAt));
        return table;
    }

    public IRenderable Volumes(IReadOnlyList<Volume> volumes)
    {
        var table = Table("NAME", "SIZE", "STATE", "ATTACHED-TO", "NODE", "CREATED");
        foreach (var v in volumes)
            AddRow(table, v.Name, Size(v.SizeBytes), v.State, v.AttachedTo, v.Node, Time(v.CreatedAt));
        return table;
    }

    public static IRenderable Operation(Operation o) => Details(
        ("Id", o.Id),
        ("Kind", o.Kind),
        ("Target", o.Target),
        ("Status", o.Status),
        ("Message", o.Message),
        ("Error", o.Error),
        ("Created", Time(o.CreatedAt)),
        ("Updated", Time(o.UpdatedAt)));

    public IRenderable AuditEntries(IReadOnlyList<AuditEntry> entries)
    {
        var table = Table("SEQ", "TIME", "USER", "SOURCE", "ACTION", "OUTCOME", "TARGET");
        foreach (var e in entries)
        {
            AddRow(table, e.Seq.ToString(CultureInfo.InvariantCulture), Time(e.Time), e.UserName ?? e.UserId ?? "(anonymous)", e.Source, e.Action,
                $"{e.Outcome} {e.Status.ToString(CultureInfo.InvariantCulture)}", e.Target);
        }
        return table;
    }

    /// <summary>Prints CSV lines as they are (<see cref="OutputFormat.Csv"/>).</summary>
    public void WriteCsv(IEnumerable<string> lines)
    {
        foreach (var line in lines)
            _env.Out.WriteLine(line);
    }

    public IRenderable Usage(IReadOnlyList<UsageRecord> records)
    {
        var table = Table("USER", "PROJECT", "RUNNING", "VCPU-SECONDS", "CPU-SECONDS", "MEMORY MIB-SECONDS", "DISK GIB-HOURS");
        foreach (var r in records)
        {
            AddRow(table, r.User ?? r.UserId ?? "(none)", r.Project, TimeSpan.FromSeconds(Math.Round(r.RunningSeconds)).ToString("c", CultureInfo.InvariantCulture),
                Number(r.VcpuSeconds), Number(r.CpuSeconds), Number(r.MemoryMibSeconds), Number(r.DiskGibHours));
        }
        return table;
    }

    /// <summary>
    /// A header line, then one line per record; numbers in invariant culture, text quoted when needed. Measured
    /// cpu_seconds is the last column, so scripts reading the allocated columns by position keep working.
    /// </summary>
    public static IEnumerable<string> UsageCsv(IReadOnlyList<UsageRecord> records)
    {
        yield return "user,project,from,to,running_seconds,vcpu_seconds,memory_mib_seconds,disk_gib_hours,cpu_seconds";
        foreach (var r in records)
        {
            yield return string.Join(',', Csv(r.User ?? r.UserId ?? ""), Csv(r.Project),
                r.From.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                r.To.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                Number(r.RunningSeconds), Number(r.VcpuSeconds), Number(r.MemoryMibSeconds), Number(r.DiskGibHours), Number(r.CpuSeconds));
        }
    }

    private static string Number(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);

    private static string Csv(string value) =>
        value.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : value;

    // ---- progress

    /// <summary>
    /// Follows an operation to its end: a spinner for a person at a terminal, otherwise one line per change
    /// (on stderr when stdout carries JSON or YAML). Returns the final operation.
    /// </summary>
    public async Task<Operation> FollowAsync(KumoClient client, Operation operation, CancellationToken cancellationToken)
    {
        var what = $"{operation.Kind} {operation.Target}";
        if (Format == OutputFormat.Table && _env.IsInteractive)
        {
            return await Console.Status().StartAsync(Markup.Escape($"{what}: {operation.Message ?? operation.Status}"), status =>
                client.WaitOperationAsync(operation.Id,
                    new SyncProgress<OperationEvent>(ev => status.Status(Markup.Escape($"{what}: {ev.Message ?? ev.Status}"))),
                    cancellationToken));
        }
        var writer = Format == OutputFormat.Table ? _env.Out : _env.Error;
        return await client.WaitOperationAsync(operation.Id,
            new SyncProgress<OperationEvent>(ev => writer.WriteLine($"{Clock(ev.At)} {what}: {ev.Message ?? ev.Status}")),
            cancellationToken);
    }

    /// <summary>
    /// Runs a byte transfer (upload, download): a progress bar for a person at a terminal, otherwise a line at
    /// every tenth of the way (on stderr when stdout carries JSON or YAML).
    /// </summary>
    public async Task TransferAsync(string what, long? total, Func<IProgress<long>, Task> transfer)
    {
        if (Format == OutputFormat.Table && _env.IsInteractive)
        {
            await Console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn())
                .StartAsync(async context =>
                {
                    var task = context.AddTask(Markup.Escape(what), maxValue: total is > 0 ? total.Value : 1);
                    if (total is not > 0) task.IsIndeterminate = true;
                    await transfer(new SyncProgress<long>(done => task.Value = done));
                    task.Value = task.MaxValue;
                });
            return;
        }
        var writer = Format == OutputFormat.Table ? _env.Out : _env.Error;
        var lastTenth = -1L;
        await transfer(new SyncProgress<long>(done =>
        {
            var tenth = total is > 0 ? done * 10 / total.Value : done / (100L << 20);
            if (tenth == lastTenth) return;
            lastTenth = tenth;
            writer.WriteLine(total is > 0
                ? $"{Clock(default)} {what}: {tenth * 10}% of {Size(total.Value)}"
                : $"{Clock(default)} {what}: {Size(done)}");
        }));
    }

    private static string Clock(DateTimeOffset at) =>
        (at == default ? DateTimeOffset.Now : at.ToLocalTime()).ToString("HH:mm:ss", CultureInfo.InvariantCulture);

    // ---- errors

    public const string NotLoggedIn = "not logged in or the session expired; run kumo login";

    public void Error(string message) => _env.Error.WriteLine($"error: {message}");

    /// <summary>One line for the problem, then the per-field messages or per-node rejections that explain it.</summary>
    public void Error(KumoApiException exception)
    {
        var problem = exception.Problem;
        if (problem?.Status == 401)
        {
            Error(NotLoggedIn);
            return;
        }
        if (problem?.Status == 429)
        {
            var wait = exception.RetryAfter is { } after && !exception.Message.Contains("try again", StringComparison.OrdinalIgnoreCase)
                ? $" (try again in {Math.Ceiling(after.TotalSeconds):0} s)" : "";
            Error(exception.Message + wait);
            return;
        }
        // When the problem lists its causes, the title plus the causes say it once; otherwise the detail does.
        var listsCauses = problem is not null && (problem.Errors is { Count: > 0 } || problem.Rejections is { Count: > 0 });
        Error(listsCauses ? problem!.Title : exception.Message);
        if (problem is null)
            return;
        foreach (var (field, messages) in problem.Errors ?? new Dictionary<string, string[]>())
        {
            foreach (var message in messages)
                _env.Error.WriteLine(string.IsNullOrEmpty(field) ? $"  {message}" : $"  {field}: {message}");
        }
        foreach (var (node, reason) in (problem.Rejections ?? new Dictionary<string, string>()).OrderBy(r => r.Key, StringComparer.Ordinal))
            _env.Error.WriteLine($"  node {node}: {reason}");
        if (exception.Is(ProblemTypes.QuotaExceeded))
            _env.Error.WriteLine("  (see: kumo quota show)");
    }

    /// <summary>Reports on the calling thread, in order (Progress&lt;T&gt; would post to the thread pool).</summary>
    internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
