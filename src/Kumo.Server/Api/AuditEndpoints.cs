using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Kumo.Core;
using Kumo.Server.Audit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

internal static class AuditEndpoints
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 10_000;

    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/audit").WithTags("audit");

        g.MapGet("/", (AuditLog log, TimeProvider time, string? user, string? since, string? limit, CancellationToken ct) =>
            log.ListAsync(string.IsNullOrWhiteSpace(user) ? null : user.Trim(), ParseSince(since, time), ParseLimit(limit), ct))
            .Requires("audit", "list");

        g.MapGet("/verify", (AuditLog log, CancellationToken ct) => log.VerifyAsync(ct)).Requires("audit", "verify");

        g.MapGet("/export", ExportAsync).Produces(200, contentType: "application/x-ndjson").Requires("audit", "export");
    }

    /// <summary>JSON lines, oldest first, streamed as they are read.</summary>
    private static async Task ExportAsync(AuditLog log, HttpContext http, CancellationToken ct)
    {
        http.Response.ContentType = "application/x-ndjson";
        http.Response.Headers.ContentDisposition = "attachment; filename=kumo-audit.jsonl";
        var body = http.Response.BodyWriter;
        await using var json = new Utf8JsonWriter(body);
        var lines = 0;
        await foreach (var entry in log.ExportAsync(ct))
        {
            JsonSerializer.Serialize(json, entry, Problems.Json);
            json.Flush();
            json.Reset();
            body.Write("\n"u8);
            if (++lines % 256 == 0)
                await body.FlushAsync(ct);
        }
        await body.FlushAsync(ct);
    }

    private static DateTimeOffset? ParseSince(string? since, TimeProvider time)
    {
        if (since is null)
            return null;
        return AuditSince.TryParse(since, time.GetUtcNow(), out var at, out var error) ? at : throw ProblemException.Validation("since", error!);
    }

    private static int ParseLimit(string? limit)
    {
        if (limit is null)
            return DefaultLimit;
        return int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= MaxLimit
            ? n
            : throw ProblemException.Validation("limit", $"must be a whole number from 1 to {MaxLimit}");
    }
}
