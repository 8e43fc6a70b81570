using Kumo.Core;

namespace Kumo.Server.Scheduling;

/// <summary>Capacity a node offers to reservations, already multiplied by the overcommit ratios.</summary>
public sealed record NodeCapacity(string Node, int Cpus, long MemoryBytes)
{
    /// <summary>Applies the same ratios and rounding the scheduler uses, so both agree on what "full" means.</summary>
    public static NodeCapacity FromPhysical(string node, int cpus, long memoryBytes, SchedulerOptions ratios) =>
        new(node, (int)Math.Floor(cpus * ratios.CpuOvercommit), (long)Math.Floor(memoryBytes * ratios.MemoryOvercommit));
}

/// <summary>A reserved window [Start, End) holding capacity on one node. Half-open, so back-to-back windows do not overlap.</summary>
public sealed record ReservationWindow(string Name, string? Node, DateTimeOffset Start, DateTimeOffset End, int Cpus, long MemoryBytes)
{
    public bool Overlaps(DateTimeOffset start, DateTimeOffset end) => Start < end && start < End;

    public override string ToString() => $"'{Name}' {Start.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}..{End.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}";
}

/// <summary>Outcome of an admission: the chosen node, or why not (validation error or the windows in the way).</summary>
public sealed record Admission(string? Node, string? Error, IReadOnlyList<ReservationWindow> Conflicts)
{
    public bool Admitted => Node is not null;
}

/// <summary>
/// Pure admission of a reservation against a calendar. Each reservation is bound to one node (a VM runs on one node),
/// and a node's reservations may never together exceed its capacity at any instant. Kept free of I/O so the
/// caller can run it inside the database write that stores the result, which is what makes admission race-free.
/// </summary>
public static class ReservationCalendar
{
    /// <summary>Checks the window itself; null when it is acceptable.</summary>
    public static string? Validate(DateTimeOffset start, DateTimeOffset end, DateTimeOffset now)
    {
        if (end < start) return $"end {Fmt(end)} is before start {Fmt(start)}";
        if (end == start) return $"window is zero-length (start and end are both {Fmt(start)})";
        if (end <= now) return $"window {Fmt(start)}..{Fmt(end)} is in the past (now {Fmt(now)})";
        if (start < now) return $"start {Fmt(start)} is in the past (now {Fmt(now)})";
        return null;
    }

    public static Admission Admit(
        IReadOnlyList<NodeCapacity> nodes,
        IReadOnlyList<ReservationWindow> existing,
        ReservationWindow request,
        DateTimeOffset now)
    {
        var invalid = Validate(request.Start, request.End, now);
        if (invalid is not null) return new Admission(null, invalid, []);
        if (request.Cpus <= 0 || request.MemoryBytes <= 0)
            return new Admission(null, "a reservation needs at least 1 vCPU and some memory", []);
        if (nodes.Count == 0) return new Admission(null, "no node is registered; start kumo-agent", []);

        var conflicts = new List<ReservationWindow>();
        var reasons = new List<string>();
        // Ordinal node order keeps admission deterministic (same calendar, same answer).
        foreach (var node in nodes.OrderBy(n => n.Node, StringComparer.Ordinal))
        {
            if (request.Node is not null && request.Node != node.Node) continue;
            if (request.Cpus > node.Cpus || request.MemoryBytes > node.MemoryBytes)
            {
                reasons.Add($"{node.Node}: needs {request.Cpus} vCPU/{ByteSize.Human(request.MemoryBytes)}, node offers {node.Cpus} vCPU/{ByteSize.Human(node.MemoryBytes)} in total");
                continue;
            }
            var overlapping = existing
                .Where(r => r.Node == node.Node && r.Overlaps(request.Start, request.End))
                .ToList();
            var (peakCpus, peakMemory) = Peak(overlapping, request.Start, request.End);
            if (peakCpus + request.Cpus <= node.Cpus && peakMemory + request.MemoryBytes <= node.MemoryBytes)
                return new Admission(node.Node, null, []);
            conflicts.AddRange(overlapping);
            reasons.Add($"{node.Node}: {peakCpus} of {node.Cpus} vCPU and {ByteSize.Human(peakMemory)} of {ByteSize.Human(node.MemoryBytes)} already reserved during the window");
        }
        if (reasons.Count == 0)
            return new Admission(null, $"no node named '{request.Node}'", []);
        var named = conflicts.Count == 0
            ? ""
            : "; conflicts with " + string.Join(", ", conflicts.OrderBy(c => c.Start).ThenBy(c => c.Name, StringComparer.Ordinal).Select(c => c.ToString()));
        return new Admission(null, $"capacity is not free for the whole window {Fmt(request.Start)}..{Fmt(request.End)} ({string.Join("; ", reasons)}){named}", conflicts);
    }

    /// <summary>
    /// Highest simultaneous use inside [start, end). Use only rises at a window's start, so the maxima are at the
    /// request's start or at some overlapping window's start inside the request; cpu and memory peaks are taken
    /// separately (they may occur at different instants, and each must fit on its own).
    /// </summary>
    public static (int Cpus, long MemoryBytes) Peak(IReadOnlyList<ReservationWindow> windows, DateTimeOffset start, DateTimeOffset end)
    {
        var instants = windows.Select(w => w.Start).Where(s => s > start && s < end).Append(start).Distinct();
        int peakCpus = 0;
        long peakMemory = 0;
        foreach (var t in instants)
        {
            int cpus = 0;
            long memory = 0;
            foreach (var w in windows)
            {
                if (w.Start <= t && t < w.End)
                {
                    cpus += w.Cpus;
                    memory += w.MemoryBytes;
                }
            }
            peakCpus = Math.Max(peakCpus, cpus);
            peakMemory = Math.Max(peakMemory, memory);
        }
        return (peakCpus, peakMemory);
    }

    private static string Fmt(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
}
