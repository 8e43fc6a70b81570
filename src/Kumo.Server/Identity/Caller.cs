using Microsoft.AspNetCore.Http;

namespace Kumo.Server.Identity;

public static class Roles
{
    public const string Admin = "admin";
    public const string User = "user";

    /// <summary>A node agent (not a person); only the agent protocol accepts it.</summary>
    public const string Agent = "agent";
}

/// <summary>
/// Who is calling, as established by authentication. Anonymous callers have no user. Stored on the
/// HttpContext by the authentication step; read by authorization, audit and the services.
/// </summary>
public sealed record Caller(string? UserId, string? UserName, string? Role, string SourceAddress)
{
    public bool IsAnonymous => UserId is null;
    public bool IsAdmin => Role == Roles.Admin;

    /// <summary>Came with a metrics token: may scrape /metrics (seeing what its user may see) and call nothing else.</summary>
    public bool MetricsOnly { get; init; }

    public static Caller Anonymous(string source) => new(null, null, null, source);

    public static Caller Of(HttpContext ctx) =>
        ctx.Features.Get<Caller>() ?? Anonymous(ctx.Connection.RemoteIpAddress?.ToString() ?? "unknown");

    public void AttachTo(HttpContext ctx) => ctx.Features.Set(this);
}
