using System.CommandLine;
using System.Globalization;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo cluster create | list | show | scale | delete, and kumo reservation list | show.</summary>
internal static class ClusterCommands
{
    public static Command Create(CliContext cli)
    {
        var cluster = new Command("cluster", "Virtual clusters: a frontend with an outside address plus compute nodes on a private network");

        var name = new Argument<string>("NAME") { Description = "Cluster name (lowercase letters, digits and '-'; members are NAME-fe, NAME-n1...)" };
        var nodes = new Option<int>("--nodes") { Description = "Compute nodes (1 to 64 by default)", Required = true };
        var frontendImage = new Option<string?>("--frontend-image") { Description = "Image of the frontend (default: tiny)" };
        var frontendCpus = new Option<int?>("--frontend-cpus") { Description = "Virtual CPUs of the frontend" };
        var frontendMemory = new Option<string?>("--frontend-memory") { Description = "Memory of the frontend: 512M, 1G" };
        var nodeImage = new Option<string?>("--node-image") { Description = "Image of the compute nodes (default: tiny)" };
        var nodeCpus = new Option<int?>("--node-cpus") { Description = "Virtual CPUs of each compute node" };
        var nodeMemory = new Option<string?>("--node-memory") { Description = "Memory of each compute node: 256M" };
        var subnet = new Option<string?>("--subnet") { Description = "Private network subnet (default: a free /24 in 10.224.0.0/11)" };
        var network = new Option<string?>("--network") { Description = "Existing network of the project for the frontend's outside address (default: a new NAT network NAME-ext)" };
        var expose = new Option<int?>("--expose") { Description = "Frontend port reachable through a node port forward (default 22; 0 for none)" };
        var start = new Option<string?>("--start") { Description = "Reserve from this time: local 2026-12-01T09:00, UTC with Z, or +DURATION from now (+10m)" };
        var end = new Option<string?>("--end") { Description = "Reservation end, same forms as --start; at the end the cluster is stopped and released" };
        var noWait = VmCommands.NoWait();
        var create = new Command("create", "Create a cluster now, or reserve it for a time window, and wait until every member runs")
        {
            name, nodes, frontendImage, frontendCpus, frontendMemory, nodeImage, nodeCpus, nodeMemory, subnet, network, expose, start, end, noWait,
        };
        cli.Examples(create,
            "kumo cluster create hpc --nodes 4 --node-memory 256M",
            "kumo cluster create hpc --frontend-image debian --nodes 4 --node-image tiny --node-memory 256M",
            "kumo cluster create lab --nodes 2 --start 2026-12-01T09:00 --end 2026-12-01T18:00",
            "kumo cluster create quick --nodes 2 --end +2h");
        cli.SetAction(create, async run =>
        {
            var n = Check.Name(run.Get(name), "cluster name");
            if (run.Get(subnet) is { } s && !Cidr.TryParse(s, out _, out var subnetError)) throw new UsageException($"--subnet: {subnetError}");
            var now = DateTimeOffset.UtcNow;
            var post = new ClustersPost
            {
                Name = n,
                Nodes = run.Get(nodes),
                FrontendImage = run.Get(frontendImage) is { } fi ? Check.Name(fi, "image name") : null,
                FrontendCpus = Check.Positive(run.Get(frontendCpus), "--frontend-cpus"),
                FrontendMemory = Check.Size(run.Get(frontendMemory), "--frontend-memory"),
                NodeImage = run.Get(nodeImage) is { } ni ? Check.Name(ni, "image name") : null,
                NodeCpus = Check.Positive(run.Get(nodeCpus), "--node-cpus"),
                NodeMemory = Check.Size(run.Get(nodeMemory), "--node-memory"),
                Subnet = run.Get(subnet),
                Network = run.Get(network) is { } net ? Check.Name(net, "network name") : null,
                ExposePort = run.Get(expose),
                Start = run.Get(start) is { } st ? When(st, "--start", now) : null,
                End = run.Get(end) is { } en ? When(en, "--end", now) : null,
            };
            if (post.Start is not null && post.End is null) throw new UsageException("--start needs --end: a reservation is a window");
            var operation = await run.Client.CreateClusterAsync(post, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(noWait), async _ =>
                run.Output.Write(await run.Client.GetClusterAsync(n, run.Cancellation), Output.Cluster));
        });
        cluster.Subcommands.Add(create);

        var list = new Command("list", "List the project's clusters with their state");
        cli.Examples(list, "kumo cluster list", "kumo cluster list -o json");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListClustersAsync(run.Cancellation), run.Output.Clusters);
            return KumoCli.Ok;
        });
        cluster.Subcommands.Add(list);

        var showName = new Argument<string>("NAME") { Description = "Cluster name" };
        var show = new Command("show", "Show a cluster: members, addresses, outside port, reservation and events") { showName };
        cli.Examples(show, "kumo cluster show hpc");
        cli.SetAction(show, async run =>
        {
            run.Output.Write(await run.Client.GetClusterAsync(Check.Name(run.Get(showName), "cluster name"), run.Cancellation), Output.Cluster);
            return KumoCli.Ok;
        });
        cluster.Subcommands.Add(show);

        var scaleName = new Argument<string>("NAME") { Description = "Cluster name" };
        var scaleNodes = new Option<int>("--nodes") { Description = "New number of compute nodes (removing takes the highest-numbered ones)", Required = true };
        var scaleNoWait = VmCommands.NoWait();
        var scale = new Command("scale", "Add or remove compute nodes and wait until the cluster is ready again") { scaleName, scaleNodes, scaleNoWait };
        cli.Examples(scale, "kumo cluster scale hpc --nodes 6");
        cli.SetAction(scale, async run =>
        {
            var n = Check.Name(run.Get(scaleName), "cluster name");
            var operation = await run.Client.ScaleClusterAsync(n, run.Get(scaleNodes), run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(scaleNoWait), async _ =>
                run.Output.Write(await run.Client.GetClusterAsync(n, run.Cancellation), Output.Cluster));
        });
        cluster.Subcommands.Add(scale);

        var deleteName = new Argument<string>("NAME") { Description = "Cluster name" };
        var deleteNoWait = VmCommands.NoWait();
        var delete = new Command("delete", "Delete a cluster: every member, its port forward and the networks it made") { deleteName, deleteNoWait };
        cli.Examples(delete, "kumo cluster delete hpc");
        cli.SetAction(delete, async run =>
        {
            var n = Check.Name(run.Get(deleteName), "cluster name");
            var operation = await run.Client.DeleteClusterAsync(n, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(deleteNoWait), _ =>
            {
                run.Output.Write(new { name = n, deleted = true }, r => Output.Line($"cluster {r.name} deleted"));
                return Task.CompletedTask;
            });
        });
        cluster.Subcommands.Add(delete);
        return cluster;
    }

    public static Command Reservations(CliContext cli)
    {
        var reservation = new Command("reservation", "The reservation calendar: capacity held for clusters and VMs during their windows (times shown in local time)");
        var list = new Command("list", "List the project's reservations, past ones included");
        cli.Examples(list, "kumo reservation list");
        cli.SetAction(list, async run =>
        {
            run.Output.Write(await run.Client.ListReservationsAsync(run.Cancellation), run.Output.Reservations);
            return KumoCli.Ok;
        });
        reservation.Subcommands.Add(list);

        var showName = new Argument<string>("NAME") { Description = "Reservation name (the cluster's or the VM's)" };
        var show = new Command("show", "Show one reservation with its events") { showName };
        cli.Examples(show, "kumo reservation show hpc");
        cli.SetAction(show, async run =>
        {
            run.Output.Write(await run.Client.GetReservationAsync(Check.Name(run.Get(showName), "reservation name"), run.Cancellation), Output.Reservation);
            return KumoCli.Ok;
        });
        reservation.Subcommands.Add(show);

        var deleteName = new Argument<string>("NAME") { Description = "Reservation name (the cluster's or the VM's)" };
        var deleteNoWait = VmCommands.NoWait();
        var delete = new Command("delete", "Cancel a reservation before its window, or end it now: its VM or cluster is deleted") { deleteName, deleteNoWait };
        cli.Examples(delete, "kumo reservation delete lab", "kumo reservation delete exam-vm");
        cli.SetAction(delete, async run =>
        {
            var n = Check.Name(run.Get(deleteName), "reservation name");
            var operation = await run.Client.DeleteReservationAsync(n, run.Cancellation);
            return await OperationCommands.FinishAsync(run, operation, run.Get(deleteNoWait), _ =>
            {
                run.Output.Write(new { name = n, deleted = true }, r => Output.Line($"reservation {r.name} deleted"));
                return Task.CompletedTask;
            });
        });
        reservation.Subcommands.Add(delete);
        return reservation;
    }

    /// <summary>A time as users type it: local time without offset, an explicit offset or Z, or +DURATION from now.</summary>
    internal static DateTimeOffset When(string text, string option, DateTimeOffset now)
    {
        var t = text.Trim();
        if (t.StartsWith('+'))
        {
            return Durations.TryParse(t[1..], out var d, out var error) ? now + d : throw new UsageException($"{option}: {error}");
        }
        if (DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var at)) return at.ToUniversalTime();
        throw new UsageException($"{option}: '{text}' is not a time; use 2026-12-01T09:00 (local), 2026-12-01T09:00Z (UTC) or +30m");
    }
}
