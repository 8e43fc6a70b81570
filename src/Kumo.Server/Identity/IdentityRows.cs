namespace Kumo.Server.Identity;

internal sealed class UserRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Role { get; set; } = "";
    public string Source { get; set; } = "";
    public string? PasswordHash { get; set; }
    public long Disabled { get; set; }
    public string CreatedAt { get; set; } = "";
}

internal sealed class TokenRow
{
    public string Id { get; set; } = "";
    public string UserId { get; set; } = "";
    public string Hash { get; set; } = "";
    public string? Name { get; set; }
    public string Kind { get; set; } = "";
    public string CreatedAt { get; set; } = "";
    public string? ExpiresAt { get; set; }
    public string? LastUsedAt { get; set; }
    public long Revoked { get; set; }
}
