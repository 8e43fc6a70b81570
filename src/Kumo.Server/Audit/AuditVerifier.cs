using Kumo.Core;

namespace Kumo.Server.Audit;

/// <summary>
/// Walks the chain in storage order and names the first broken entry: a gap or disorder in seq, a prev_hash that is
/// not the previous entry's hash, a hash that does not match the entry's content, or an entry the signed checkpoint
/// disagrees with. Then checks the checkpoint itself: its signature, and whether it vouches for more entries than
/// the table holds (the newest ones were removed).
/// </summary>
internal static class AuditVerifier
{
    public static AuditVerification Verify(IEnumerable<AuditRow> rows, CheckpointRead read)
    {
        var checkpoint = read.State == CheckpointState.Valid ? read.Checkpoint : null;
        var expected = 1L;
        var prev = AuditChain.Genesis;
        (long Seq, string Reason)? broken = null;
        foreach (var row in rows)
        {
            broken = Check(row, expected, prev, checkpoint);
            if (broken is not null)
                break;
            prev = row.Hash;
            expected++;
        }
        var count = expected - 1;
        var fault = First(broken, CheckpointFault(read, checkpoint, count));
        return new AuditVerification
        {
            Ok = fault is null,
            Count = count,
            CheckpointCount = checkpoint?.Count,
            BrokenSeq = fault is { Seq: > 0 } f ? f.Seq : null,
            Reason = fault?.Reason,
        };
    }

    /// <summary>The fault with the lowest entry number; faults of the checkpoint as a whole (seq 0) come last.</summary>
    private static (long Seq, string Reason)? First((long Seq, string Reason)? a, (long Seq, string Reason)? b)
    {
        if (a is null || b is null) return a ?? b;
        static long Rank(long seq) => seq > 0 ? seq : long.MaxValue;
        return Rank(b.Value.Seq) < Rank(a.Value.Seq) ? b : a;
    }

    private const string MissingCheckpoint = "the checkpoint file audit.checkpoint is missing, so removed newest entries would go unnoticed";

    private static (long Seq, string Reason)? Check(AuditRow row, long expected, string prev, AuditCheckpoint? checkpoint)
    {
        if (row.Seq != expected)
        {
            return row.Seq > expected
                ? (expected, row.Seq == expected + 1 ? $"entry {expected} is missing" : $"entries {expected} to {row.Seq - 1} are missing")
                : (expected, $"entry {expected} carries sequence number {row.Seq}: entries were reordered or duplicated");
        }
        if (row.PrevHash != prev)
            return (row.Seq, expected == 1 ? "prev_hash is not the genesis value" : $"prev_hash does not match the hash of entry {expected - 1}");
        if (AuditChain.Hash(row) != row.Hash)
            return (row.Seq, "hash mismatch: the entry was changed after it was written");
        if (checkpoint is not null && row.Seq == checkpoint.Count && row.Hash != checkpoint.Hash)
            return (row.Seq, "the entry differs from the one the signed checkpoint vouches for");
        return null;
    }

    /// <summary>Faults of the anchor, once the walked entries are sound. Seq 0 stands for "not one entry".</summary>
    private static (long Seq, string Reason)? CheckpointFault(CheckpointRead read, AuditCheckpoint? checkpoint, long count)
    {
        switch (read.State)
        {
            case CheckpointState.BadSignature:
                return (0, "the checkpoint's signature does not verify: it was forged or altered");
            case CheckpointState.Unreadable:
                return (0, $"the checkpoint cannot be read ({read.Error})");
            case CheckpointState.Missing:
                return count > 0 ? (0, MissingCheckpoint) : null;
        }
        if (checkpoint!.Count > count)
        {
            var first = count + 1;
            return (first, first == checkpoint.Count
                ? $"entry {first} is missing: the signed checkpoint vouches for {checkpoint.Count} entries, the log ends at {count}"
                : $"entries {first} to {checkpoint.Count} are missing: the signed checkpoint vouches for {checkpoint.Count} entries, the log ends at {count}");
        }
        if (checkpoint.Count == 0 && checkpoint.Hash != AuditChain.Genesis)
            return (0, "the signed checkpoint of an empty log does not carry the genesis value");
        if (checkpoint.Fault is not null)
            return (checkpoint.FaultSeq ?? 0, checkpoint.Fault);
        return null;
    }
}
