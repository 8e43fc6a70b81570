using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Kumo.Core.Files;

namespace Kumo.Server.Audit;

/// <summary>
/// The chain head, anchored outside the table: how many entries exist and the newest hash. A fault found when kumod
/// starts (entries missing since the last checkpoint, a forged or missing checkpoint) is carried in every later
/// checkpoint, so restarting kumod cannot wash it out.
/// </summary>
internal sealed record AuditCheckpoint(long Count, string Hash, long? FaultSeq = null, string? Fault = null);

internal enum CheckpointState
{
    Valid,
    Missing,
    Unreadable,
    BadSignature,
}

internal readonly record struct CheckpointRead(CheckpointState State, AuditCheckpoint? Checkpoint, string? Error = null);

/// <summary>
/// STATE/audit.checkpoint, signed with HMAC-SHA256 under STATE/audit.key (32 random bytes, mode 0600, made on first
/// start). Someone who can rewrite the database but not read the key cannot move the anchor to match.
/// </summary>
internal sealed class AuditCheckpointFile
{
    private const int KeyLength = 32;
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode Readable = Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
    private static readonly byte[] Tag = Encoding.ASCII.GetBytes("kumo-audit-checkpoint-v1");

    private byte[] _key = [];

    public AuditCheckpointFile(string stateDir)
    {
        Path = System.IO.Path.Combine(stateDir, "audit.checkpoint");
        KeyPath = System.IO.Path.Combine(stateDir, "audit.key");
    }

    public string Path { get; }
    public string KeyPath { get; }

    /// <summary>Reads the key, or makes one; true when it was made now. A key file of the wrong size is set aside as audit.key.rejected.</summary>
    public bool LoadOrCreateKey()
    {
        if (File.Exists(KeyPath))
        {
            var key = File.ReadAllBytes(KeyPath);
            if (key.Length == KeyLength)
            {
                _key = key;
                if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(KeyPath) & ~Private) != 0)
                    File.SetUnixFileMode(KeyPath, Private);
                return false;
            }
            File.Move(KeyPath, KeyPath + ".rejected", overwrite: true);
        }
        var fresh = RandomNumberGenerator.GetBytes(KeyLength);
        DurableFile.Write(KeyPath, fresh, Private);
        _key = fresh;
        return true;
    }

    public CheckpointRead Read()
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(Path);
        }
        catch (FileNotFoundException)
        {
            return new(CheckpointState.Missing, null);
        }
        Stored? stored;
        try
        {
            stored = JsonSerializer.Deserialize<Stored>(bytes, JsonOptions);
        }
        catch (JsonException e)
        {
            return new(CheckpointState.Unreadable, null, e.Message);
        }
        if (stored is null || stored.Hash is null || stored.Mac is null)
            return new(CheckpointState.Unreadable, null, "fields are missing");
        var checkpoint = new AuditCheckpoint(stored.Count, stored.Hash, stored.FaultSeq, stored.Fault);
        byte[] mac;
        try
        {
            mac = Convert.FromHexString(stored.Mac);
        }
        catch (FormatException)
        {
            return new(CheckpointState.BadSignature, null);
        }
        return CryptographicOperations.FixedTimeEquals(mac, Sign(checkpoint))
            ? new(CheckpointState.Valid, checkpoint)
            : new(CheckpointState.BadSignature, null);
    }

    public void Write(AuditCheckpoint checkpoint)
    {
        var stored = new Stored(checkpoint.Count, checkpoint.Hash, checkpoint.FaultSeq, checkpoint.Fault, Convert.ToHexStringLower(Sign(checkpoint)));
        DurableFile.Write(Path, JsonSerializer.SerializeToUtf8Bytes(stored, JsonOptions), Readable);
    }

    private byte[] Sign(AuditCheckpoint c)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        Canonical.Write(buffer, Tag);
        Canonical.Write(buffer, c.Count);
        Canonical.Write(buffer, c.Hash);
        Canonical.Write(buffer, c.FaultSeq);
        Canonical.Write(buffer, c.Fault);
        return HMACSHA256.HashData(_key, buffer.WrittenSpan);
    }

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    private sealed record Stored(long Count, string? Hash, long? FaultSeq, string? Fault, string? Mac);
}
