using System.Globalization;
using Kumo.Server.Accounting;
using Kumo.Server.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

internal static class UsageEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapGet("/usage", (UsageService usage, HttpContext http, string? user, string? project, string? from, string? to, CancellationToken ct) =>
            usage.ListAsync(Caller.Of(http), Blank(user), Blank(project), ParseTime(from, "from"), ParseTime(to, "to"), ct))
            .WithTags("usage")
            .Requires("usage", "list");
    }

    private static string? Blank(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    /// <summary>RFC 3339 (a bare date means its midnight UTC).</summary>
    internal static DateTimeOffset? ParseTime(string? value, string field)
    {
        if (value is null)
            return null;
        return DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at)
            ? at
            : throw ProblemException.Validation(field, $"'{value}' is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)");
    }
}
