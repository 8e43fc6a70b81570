using Kumo.Server.Scheduling;

namespace Kumo.Server.Tests.Scheduling;

/// <summary>
/// Randomized property tests of reservation admission with fixed seeds (reproducible): each property runs over
/// many generated calendars and checks the invariant against an independent brute-force minute-by-minute count.
/// </summary>
public sealed class ReservationCalendarTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 0, 0, 0, TimeSpan.Zero);
    private const long Mi = 1024 * 1024;

    private static ReservationWindow RandomRequest(Random rng, int i, int horizonMinutes = 600)
    {
        var start = rng.Next(1, horizonMinutes);
        var length = rng.Next(1, 180);
        return new ReservationWindow($"r{i}", null, Now.AddMinutes(start), Now.AddMinutes(start + length), rng.Next(1, 5), rng.Next(1, 9) * 128 * Mi);
    }

    private static List<NodeCapacity> RandomNodes(Random rng) =>
        Enumerable.Range(0, rng.Next(1, 4)).Select(i => new NodeCapacity($"node-{i}", rng.Next(2, 9), rng.Next(2, 17) * 128 * Mi)).ToList();

    [Fact]
    public void Property_AdmittedReservationsNeverExceedCapacityAtAnyInstant()
    {
        var rng = new Random(7_04);
        var admittedTotal = 0;
        var refusedTotal = 0;
        for (var run = 0; run < 200; run++)
        {
            var nodes = RandomNodes(rng);
            var admitted = new List<ReservationWindow>();
            for (var i = 0; i < 30; i++)
            {
                var req = RandomRequest(rng, i);
                var result = ReservationCalendar.Admit(nodes, admitted, req, Now);
                if (result.Admitted) { admitted.Add(req with { Node = result.Node }); admittedTotal++; }
                else refusedTotal++;
            }
            // Brute force: every minute of the horizon, per node.
            foreach (var n in nodes)
            {
                for (var m = 0; m < 800; m++)
                {
                    var t = Now.AddMinutes(m);
                    var live = admitted.Where(a => a.Node == n.Node && a.Start <= t && t < a.End).ToList();
                    Assert.True(live.Sum(a => a.Cpus) <= n.Cpus, $"run {run}: {n.Node} cpu over at +{m}min");
                    Assert.True(live.Sum(a => a.MemoryBytes) <= n.MemoryBytes, $"run {run}: {n.Node} memory over at +{m}min");
                }
            }
        }
        // The generator must exercise both outcomes, or the property says nothing.
        Assert.True(admittedTotal > 0 && refusedTotal > 0, $"admitted {admittedTotal}, refused {refusedTotal}");
    }

    [Fact]
    public void Property_NonOverlappingWindowsAlwaysFitWhenEachFitsAlone()
    {
        var rng = new Random(42);
        for (var run = 0; run < 300; run++)
        {
            var nodes = RandomNodes(rng);
            var admitted = new List<ReservationWindow>();
            var cursor = Now.AddMinutes(rng.Next(1, 30));
            for (var i = 0; i < 20; i++)
            {
                var length = TimeSpan.FromMinutes(rng.Next(1, 120));
                var req = new ReservationWindow($"r{i}", null, cursor, cursor + length, rng.Next(1, 9), rng.Next(1, 17) * 128 * Mi);
                // Back-to-back windows (gap 0) are included on purpose: windows are half-open.
                cursor = cursor + length + TimeSpan.FromMinutes(rng.Next(0, 3));
                var alone = ReservationCalendar.Admit(nodes, [], req, Now);
                var result = ReservationCalendar.Admit(nodes, admitted, req, Now);
                Assert.Equal(alone.Admitted, result.Admitted);
                if (result.Admitted) admitted.Add(req with { Node = result.Node });
            }
        }
    }

    [Fact]
    public void Property_RefusalNamesOnlyWindowsThatReallyOverlap()
    {
        var rng = new Random(2026);
        var refusals = 0;
        for (var run = 0; run < 200; run++)
        {
            var nodes = RandomNodes(rng);
            var admitted = new List<ReservationWindow>();
            for (var i = 0; i < 30; i++)
            {
                var req = RandomRequest(rng, i, horizonMinutes: 200);
                var result = ReservationCalendar.Admit(nodes, admitted, req, Now);
                if (result.Admitted) { admitted.Add(req with { Node = result.Node }); continue; }
                if (ReservationCalendar.Admit(nodes, [], req, Now).Admitted)
                {
                    // Fits alone but refused: the calendar is in the way, so at least one window must be named.
                    refusals++;
                    Assert.NotEmpty(result.Conflicts);
                    Assert.Contains("conflicts with", result.Error);
                }
                foreach (var c in result.Conflicts)
                {
                    Assert.True(c.Start < req.End && req.Start < c.End, $"{c} does not overlap {req}");
                    Assert.Contains(admitted, a => a == c);
                    Assert.Contains($"'{c.Name}'", result.Error);
                }
            }
        }
        Assert.True(refusals > 0, "the generator never produced a calendar conflict");
    }

    [Fact]
    public void Overlap_LaterRequestRefused_NamesTheEarlierWindow()
    {
        var nodes = new List<NodeCapacity> { new("node-a", 2, 1024 * Mi) };
        var first = new ReservationWindow("first", "node-a", Now.AddHours(9), Now.AddHours(18), 2, 512 * Mi);
        var second = new ReservationWindow("second", null, Now.AddHours(17), Now.AddHours(20), 1, 256 * Mi);

        var result = ReservationCalendar.Admit(nodes, [first], second, Now);

        Assert.False(result.Admitted);
        Assert.Equal([first], result.Conflicts);
        Assert.Contains("'first' 2026-12-01T09:00:00Z..2026-12-01T18:00:00Z", result.Error);
        Assert.True(ReservationCalendar.Admit(nodes, [first], second with { Start = Now.AddHours(18) }, Now).Admitted);
    }

    [Fact]
    public void Overcommit_UsesTheSchedulerRatios()
    {
        var cap = NodeCapacity.FromPhysical("n", 2, 1000, new SchedulerOptions { CpuOvercommit = 4.0, MemoryOvercommit = 1.5 });
        Assert.Equal(new NodeCapacity("n", 8, 1500), cap);
    }

    [Theory]
    [InlineData(10, 9, "is before start")]
    [InlineData(10, 10, "zero-length")]
    [InlineData(-5, -1, "in the past")]
    [InlineData(-5, 60, "start 2026-11-30T23:55:00Z is in the past")]
    public void BadWindows_RefusedWithClearMessages(int startMinutes, int endMinutes, string expected)
    {
        var nodes = new List<NodeCapacity> { new("node-a", 8, 8192 * Mi) };
        var req = new ReservationWindow("x", null, Now.AddMinutes(startMinutes), Now.AddMinutes(endMinutes), 1, 128 * Mi);
        var result = ReservationCalendar.Admit(nodes, [], req, Now);
        Assert.False(result.Admitted);
        Assert.Contains(expected, result.Error);
        Assert.Empty(result.Conflicts);
    }

    [Fact]
    public void TooBigForEveryNode_RefusedWithoutConflicts()
    {
        var nodes = new List<NodeCapacity> { new("node-a", 2, 512 * Mi) };
        var req = new ReservationWindow("big", null, Now.AddHours(1), Now.AddHours(2), 4, 128 * Mi);
        var result = ReservationCalendar.Admit(nodes, [], req, Now);
        Assert.False(result.Admitted);
        Assert.Empty(result.Conflicts);
        Assert.Contains("node offers 2 vCPU", result.Error);
    }
}
