using System.Security.Cryptography;
using System.Text;
using Dapper;
using Kumo.Server.Storage;

namespace Kumo.Server.Security;

/// <summary>
/// One-time join tokens: 256 random bits shown once to the admin, stored only as a SHA-256 hash. A token is spent in
/// the same transaction that records the certificate it buys, so two agents racing with one token cannot both win.
/// </summary>
public sealed class JoinTokens(Database db, TimeProvider time)
{
    public static readonly TimeSpan DefaultTtl = TimeSpan.FromHours(1);
    public static readonly TimeSpan MaxTtl = TimeSpan.FromDays(7);

    // Spent and expired tokens are kept a while so a late agent hears "used" or "expired", not "unknown".
    private static readonly TimeSpan KeepAfterExpiry = TimeSpan.FromDays(1);

    public async Task<(string Token, DateTimeOffset ExpiresAt)> CreateAsync(TimeSpan ttl, CancellationToken ct)
    {
        var token = Base64Url(RandomNumberGenerator.GetBytes(32));
        var now = time.GetUtcNow();
        var expires = now + ttl;
        await db.WriteAsync(ctx =>
        {
            ctx.Connection.Execute("DELETE FROM join_tokens WHERE expires_at < @old",
                new { old = Json.At(now - KeepAfterExpiry) }, ctx.Transaction);
            ctx.Connection.Execute("INSERT INTO join_tokens (hash, created_at, expires_at) VALUES (@hash, @now, @expires)",
                new { hash = Hash(token), now = Json.At(now), expires = Json.At(expires) }, ctx.Transaction);
        }, ct);
        return (token, expires);
    }

    /// <summary>Spends a token for <paramref name="nodeName"/> inside the caller's transaction; returns why not, or null.</summary>
    internal string? Spend(WriteContext ctx, string token, string nodeName)
    {
        var row = ctx.Connection.QuerySingleOrDefault<(string ExpiresAt, string? UsedAt, string? UsedBy)>(
            "SELECT expires_at, used_at, used_by FROM join_tokens WHERE hash = @hash", new { hash = Hash(token) }, ctx.Transaction);
        if (row == default)
            return "the join token is not known to this kumod (mistyped, or for another kumod?)";
        if (row.UsedAt is not null)
            return $"the join token was already used (by node {row.UsedBy}); create a new one: kumo node add-token";
        var now = time.GetUtcNow();
        if (Json.Time(row.ExpiresAt) <= now)
            return $"the join token expired at {row.ExpiresAt}; create a new one: kumo node add-token";
        ctx.Connection.Execute("UPDATE join_tokens SET used_at = @now, used_by = @nodeName WHERE hash = @hash",
            new { now = Json.At(now), nodeName, hash = Hash(token) }, ctx.Transaction);
        return null;
    }

    public static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token.Trim())));

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
