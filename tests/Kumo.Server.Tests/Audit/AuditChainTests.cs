using Kumo.Server.Audit;

namespace Kumo.Server.Tests.Audit;

public sealed class AuditChainTests
{
    private static AuditRow Entry() => new()
    {
        Seq = 7,
        Time = "2026-11-24T12:00:00.0000000+00:00",
        UserId = null,
        UserName = "alice",
        Source = "10.0.0.5",
        Method = "POST",
        Action = "instance.create",
        Target = "/api/v1/instances",
        Outcome = "allowed",
        Status = 202,
        RequestId = "0HN8:00000001",
        PrevHash = AuditChain.Genesis,
    };

    [Fact]
    public void Hash_OfAFixedEntry_IsPinned()
    {
        // Every stored chain depends on this value: a change to the canonical form must fail here first.
        Assert.Equal("ef47a890e92db3d5c93353e0f304656def0834f2f0f6870067c12acae82b5b08", AuditChain.Hash(Entry()));
    }

    [Fact]
    public void Genesis_IsSixtyFourZeros()
    {
        Assert.Equal(new string('0', 64), AuditChain.Genesis);
    }

    [Fact]
    public void Hash_TellsNullFromEmpty()
    {
        var withEmpty = Entry();
        withEmpty.UserId = "";

        Assert.NotEqual(AuditChain.Hash(Entry()), AuditChain.Hash(withEmpty));
    }

    [Fact]
    public void Hash_TellsWhereOneFieldEnds()
    {
        var a = Entry();
        a.Method = "GE";
        a.Action = "Tnode.list";
        var b = Entry();
        b.Method = "GET";
        b.Action = "node.list";

        Assert.NotEqual(AuditChain.Hash(a), AuditChain.Hash(b));
    }

    [Fact]
    public void Hash_CoversThePreviousHash()
    {
        var next = Entry();
        next.PrevHash = new string('1', 64);

        Assert.NotEqual(AuditChain.Hash(Entry()), AuditChain.Hash(next));
    }

    [Fact]
    public void FormatTime_IsUtcWithSevenDigits()
    {
        Assert.Equal("2026-11-24T11:00:00.1234567+00:00",
            AuditChain.FormatTime(new DateTimeOffset(2026, 11, 24, 12, 0, 0, TimeSpan.FromHours(1)).AddTicks(1234567)));
    }
}
