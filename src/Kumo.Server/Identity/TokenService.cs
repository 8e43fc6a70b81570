using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Storage;

namespace Kumo.Server.Identity;

/// <summary>
/// Bearer tokens: random secrets shown once, stored only as SHA-256 hashes. Session tokens expire; API tokens
/// live until revoked or their optional expiry. Verified callers are cached briefly and dropped at once on any
/// identity change, so revoking a token or disabling a user takes effect on the next request.
/// </summary>
public sealed class TokenService(Database db, TimeProvider time)
{
    public static readonly TimeSpan SessionLifetime = TimeSpan.FromHours(12);
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, (Caller Caller, DateTimeOffset? Expires, DateTimeOffset CachedAt)> _cache = new();

    public static string HashOf(string secret) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    /// <summary>Forgets every cached decision (roles, memberships, tokens or users changed).</summary>
    /// <summary>Bumped by every invalidation, so a lookup that started before a revoke never caches its answer.</summary>
    private long _generation;

    public void Invalidate()
    {
        Interlocked.Increment(ref _generation);
        _cache.Clear();
    }

    internal (string Secret, TokenRow Row) Issue(WriteContext ctx, string userId, string kind, string? name, TimeSpan? lifetime)
    {
        var secret = "kumo_" + Base64Url(RandomNumberGenerator.GetBytes(32));
        var now = time.GetUtcNow();
        var row = new TokenRow
        {
            Id = Ulid.NewUlid().ToString().ToLowerInvariant(),
            UserId = userId,
            Hash = HashOf(secret),
            Name = name,
            Kind = kind,
            CreatedAt = now.ToString("O"),
            ExpiresAt = lifetime is null ? null : (now + lifetime.Value).ToString("O"),
        };
        ctx.Connection.Execute(
            "INSERT INTO tokens (id, user_id, hash, name, kind, created_at, expires_at) VALUES (@Id, @UserId, @Hash, @Name, @Kind, @CreatedAt, @ExpiresAt)",
            row, ctx.Transaction);
        return (secret, row);
    }

    /// <summary>The caller a bearer token stands for, or null when it is unknown, expired, revoked or its user disabled.</summary>
    public async Task<Caller?> AuthenticateAsync(string secret, string source, CancellationToken ct)
    {
        var hash = HashOf(secret);
        var now = time.GetUtcNow();
        if (_cache.TryGetValue(hash, out var hit) && now - hit.CachedAt < CacheFor && (hit.Expires is null || hit.Expires > now))
            return hit.Caller with { SourceAddress = source };
        var generation = Interlocked.Read(ref _generation);
        var found = await db.ReadAsync(c => c.QuerySingleOrDefault<(string UserId, string Name, string Role, long Disabled, string? ExpiresAt, long Revoked, string Kind)>(
            "SELECT u.id, u.name, u.role, u.disabled, t.expires_at, t.revoked, t.kind FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = @hash",
            new { hash }), ct);
        if (found.UserId is null || found.Revoked != 0 || found.Disabled != 0) return null;
        DateTimeOffset? expires = found.ExpiresAt is null ? null : Json.Time(found.ExpiresAt);
        if (expires <= now) return null;
        var caller = new Caller(found.UserId, found.Name, found.Role, source) { MetricsOnly = found.Kind == TokenKinds.Metrics };
        _cache[hash] = (caller, expires, now);
        if (Interlocked.Read(ref _generation) != generation) _cache.TryRemove(hash, out _);
        return caller;
    }

    public async Task<ApiToken> CreateAsync(Caller caller, TokensPost? body, CancellationToken ct)
    {
        TimeSpan? ttl = null;
        if (body?.Ttl is { } text)
        {
            if (!Durations.TryParse(text, out var parsed) || parsed <= TimeSpan.Zero)
                throw ProblemException.Validation("ttl", $"'{text}' is not a duration such as 12h or 30d");
            ttl = parsed;
        }
        if (body?.Name is { Length: > 64 }) throw ProblemException.Validation("name", "token names are at most 64 characters");
        var kind = body?.Metrics is true ? TokenKinds.Metrics : TokenKinds.Api;
        (string secret, TokenRow row) = await db.WriteAsync(ctx => Issue(ctx, caller.UserId!, kind, body?.Name, ttl), ct);
        return ToApi(row) with { Secret = secret };
    }

    public Task<List<ApiToken>> ListAsync(Caller caller, CancellationToken ct) =>
        db.ReadAsync(c => c.Query<TokenRow>("SELECT * FROM tokens WHERE user_id = @UserId AND revoked = 0 ORDER BY created_at", new { caller.UserId })
            .Select(ToApi).ToList(), ct);

    public async Task RevokeAsync(Caller caller, string id, CancellationToken ct)
    {
        var n = await db.WriteAsync(ctx => ctx.Connection.Execute(
            "UPDATE tokens SET revoked = 1 WHERE id = @id AND (user_id = @UserId OR @admin) AND revoked = 0",
            new { id, caller.UserId, admin = caller.IsAdmin }, ctx.Transaction), ct);
        if (n == 0) throw ProblemException.NotFound("token", id);
        Invalidate();
    }

    /// <summary>Revokes the token the request came with (logout).</summary>
    public async Task RevokeSecretAsync(string secret, CancellationToken ct)
    {
        await db.WriteAsync(ctx => ctx.Connection.Execute("UPDATE tokens SET revoked = 1 WHERE hash = @hash", new { hash = HashOf(secret) }, ctx.Transaction), ct);
        Invalidate();
    }

    private static ApiToken ToApi(TokenRow r) => new()
    {
        Id = r.Id,
        Name = r.Name,
        Kind = r.Kind,
        CreatedAt = Json.Time(r.CreatedAt),
        ExpiresAt = r.ExpiresAt is null ? null : Json.Time(r.ExpiresAt),
        LastUsedAt = r.LastUsedAt is null ? null : Json.Time(r.LastUsedAt),
    };

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

public static class Durations
{
    /// <summary>Parses 90s, 15m, 12h, 30d or 2w.</summary>
    public static bool TryParse(string text, out TimeSpan value)
    {
        value = default;
        if (text.Length < 2 || !long.TryParse(text[..^1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n))
            return false;
        if (n > 100_000) return false;
        value = text[^1] switch
        {
            's' => TimeSpan.FromSeconds(n),
            'm' => TimeSpan.FromMinutes(n),
            'h' => TimeSpan.FromHours(n),
            'd' => TimeSpan.FromDays(n),
            'w' => TimeSpan.FromDays(7 * n),
            _ => TimeSpan.MinValue,
        };
        return value != TimeSpan.MinValue;
    }
}
