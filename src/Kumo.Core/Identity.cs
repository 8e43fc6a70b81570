namespace Kumo.Core;

public sealed record LoginRequest
{
    public string? Username { get; init; }
    public string? Password { get; init; }
}

public sealed record LoginResponse
{
    public required string Token { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public required User User { get; init; }
}

public sealed record PasswordChange
{
    public string? Current { get; init; }
    public string? New { get; init; }
}

public sealed record User
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Role { get; init; }

    /// <summary>local or ldap.</summary>
    public required string Source { get; init; }

    public bool Disabled { get; init; }
    public IReadOnlyList<string> Projects { get; init; } = [];
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>Body of POST /users. Without a password, kumod generates one and returns it once.</summary>
public sealed record UsersPost
{
    public string? Name { get; init; }
    public string? Role { get; init; }
    public string? Password { get; init; }
}

public sealed record UserCreated
{
    public required User User { get; init; }

    /// <summary>Only when kumod generated it; shown once, never stored in clear.</summary>
    public string? Password { get; init; }
}

/// <summary>What a bearer token is for. Persisted strings.</summary>
public static class TokenKinds
{
    /// <summary>Issued by a login; expires after 12 h; revoked by logout and by a password change.</summary>
    public const string Session = "session";

    /// <summary>For scripts (kumo token create): acts as its user on every endpoint.</summary>
    public const string Api = "api";

    /// <summary>For a Prometheus scraper (kumo token create --metrics): GET /metrics only, refused everywhere else.</summary>
    public const string Metrics = "metrics";
}

public sealed record ApiToken
{
    public required string Id { get; init; }
    public string? Name { get; init; }
    public required string Kind { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public DateTimeOffset? LastUsedAt { get; init; }

    /// <summary>Only in the answer to a create.</summary>
    public string? Secret { get; init; }
}

public sealed record TokensPost
{
    public string? Name { get; init; }

    /// <summary>Lifetime such as 30d or 12h; none means until revoked.</summary>
    public string? Ttl { get; init; }

    /// <summary>A scrape-only token (kind metrics): GET /metrics and nothing else, seeing what its user may see.</summary>
    public bool? Metrics { get; init; }
}

public sealed record Project
{
    public required string Name { get; init; }

    /// <summary>Set for a user's personal project.</summary>
    public string? PersonalOf { get; init; }

    public IReadOnlyList<string> Members { get; init; } = [];
    public DateTimeOffset CreatedAt { get; init; }
}

public sealed record ProjectsPost
{
    public string? Name { get; init; }
}

public sealed record MemberPost
{
    public string? User { get; init; }
}

/// <summary>Limits and current usage; a null limit means unlimited.</summary>
public sealed record Quota
{
    /// <summary>user or project.</summary>
    public required string Scope { get; init; }

    public required string Name { get; init; }
    public QuotaLimits Limits { get; init; } = new();
    public QuotaLimits Used { get; init; } = new();
}

public sealed record QuotaLimits
{
    public int? Vms { get; init; }
    public int? Containers { get; init; }
    public int? Vcpus { get; init; }
    public long? MemoryBytes { get; init; }
    public long? DiskBytes { get; init; }
}

/// <summary>Body of PUT /quotas/{scope}/{name}: sizes as strings ("8G"); omitted fields keep their value.</summary>
public sealed record QuotaPut
{
    public int? Vms { get; init; }
    public int? Containers { get; init; }
    public int? Vcpus { get; init; }
    public string? Memory { get; init; }
    public string? Disk { get; init; }
}
