using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Kumo.Core;

namespace Kumo.Server.Audit;

/// <summary>
/// One audit entry exactly as stored: every field is the text (or number) in the table, so a row read back hashes to
/// the same value it was written with. Dapper maps the snake_case columns onto these properties.
/// </summary>
internal sealed class AuditRow
{
    public long Id { get; set; }
    public long Seq { get; set; }
    public string Time { get; set; } = "";
    public string? UserId { get; set; }
    public string? UserName { get; set; }
    public string Source { get; set; } = "";
    public string Method { get; set; } = "";
    public string Action { get; set; } = "";
    public string Target { get; set; } = "";
    public string Outcome { get; set; } = "";
    public long Status { get; set; }
    public string RequestId { get; set; } = "";
    public string PrevHash { get; set; } = "";
    public string Hash { get; set; } = "";

    public AuditEntry ToApi() => new()
    {
        Seq = Seq,
        Time = DateTimeOffset.TryParse(Time, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) ? t : default,
        UserId = UserId,
        UserName = UserName,
        Source = Source,
        Method = Method,
        Action = Action,
        Target = Target,
        Outcome = Outcome,
        Status = (int)Status,
        RequestId = RequestId,
        PrevHash = PrevHash,
        Hash = Hash,
    };
}

/// <summary>
/// The hash chain. An entry's hash is SHA-256 over a canonical serialization of its fields followed by the previous
/// entry's hash; the first entry chains from <see cref="Genesis"/>. The serialization is pinned by a test: changing
/// it would make every stored chain fail verification.
/// </summary>
internal static class AuditChain
{
    /// <summary>The prev_hash of entry 1.</summary>
    public static readonly string Genesis = new('0', 64);

    private static readonly byte[] Tag = Encoding.ASCII.GetBytes("kumo-audit-v1");

    /// <summary>Times are stored as UTC with seven fractional digits, so the text sorts and round-trips exactly.</summary>
    public static string FormatTime(DateTimeOffset time) =>
        time.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'+00:00'", CultureInfo.InvariantCulture);

    public static string Hash(AuditRow e)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        Canonical.Write(buffer, Tag);
        Canonical.Write(buffer, e.Seq);
        Canonical.Write(buffer, e.Time);
        Canonical.Write(buffer, e.UserId);
        Canonical.Write(buffer, e.UserName);
        Canonical.Write(buffer, e.Source);
        Canonical.Write(buffer, e.Method);
        Canonical.Write(buffer, e.Action);
        Canonical.Write(buffer, e.Target);
        Canonical.Write(buffer, e.Outcome);
        Canonical.Write(buffer, e.Status);
        Canonical.Write(buffer, e.RequestId);
        Canonical.Write(buffer, e.PrevHash);
        return Convert.ToHexStringLower(SHA256.HashData(buffer.WrittenSpan));
    }
}

/// <summary>
/// An unambiguous byte form of a list of fields: each is a 4-byte big-endian length and its UTF-8 bytes, or length
/// -1 for null; numbers are written as invariant decimal text. No field can bleed into its neighbour.
/// </summary>
internal static class Canonical
{
    public static void Write(IBufferWriter<byte> buffer, string? value)
    {
        if (value is null)
        {
            WriteLength(buffer, -1);
            return;
        }
        var length = Encoding.UTF8.GetByteCount(value);
        WriteLength(buffer, length);
        Encoding.UTF8.GetBytes(value, buffer);
    }

    public static void Write(IBufferWriter<byte> buffer, ReadOnlySpan<byte> value)
    {
        WriteLength(buffer, value.Length);
        buffer.Write(value);
    }

    public static void Write(IBufferWriter<byte> buffer, long value) =>
        Write(buffer, value.ToString(CultureInfo.InvariantCulture));

    public static void Write(IBufferWriter<byte> buffer, long? value) =>
        Write(buffer, value?.ToString(CultureInfo.InvariantCulture));

    private static void WriteLength(IBufferWriter<byte> buffer, int length)
    {
        BinaryPrimitives.WriteInt32BigEndian(buffer.GetSpan(4), length);
        buffer.Advance(4);
    }
}
