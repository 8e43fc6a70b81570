using System.Text.Json;
using Kumo.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Api;

/// <summary>Turns every error into RFC 9457 problem+json with a stable type.</summary>
public static partial class Problems
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static async Task WriteAsync(HttpContext ctx, ProblemException e)
    {
        if (ctx.Response.HasStarted) return;
        ctx.Response.Clear();
        ctx.Response.StatusCode = e.Status;
        // A refused upload's body was not read to its end: close the connection, so the client cannot send its next
        // request into the rest of it (or onto a connection the server is about to drop).
        if (e.Status == 413) ctx.Response.Headers.Connection = "close";
        ctx.Response.ContentType = "application/problem+json";
        await JsonSerializer.SerializeAsync(ctx.Response.Body, e.ToProblem(ctx.Request.Path), Json, ctx.RequestAborted);
    }

    public static IApplicationBuilder UseKumoProblems(this IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        try
        {
            await next(ctx);
            if (ctx.Response.StatusCode == 404 && !ctx.Response.HasStarted && ctx.GetEndpoint() is null)
                await WriteAsync(ctx, new ProblemException(404, ProblemTypes.NotFound, "Not found", $"no API route matches {ctx.Request.Method} {ctx.Request.Path}"));
            else if (ctx.Response.StatusCode == 415 && !ctx.Response.HasStarted)
                await WriteAsync(ctx, new ProblemException(415, ProblemTypes.UnsupportedMediaType, "Unsupported media type",
                    $"send the body as application/json (got '{ctx.Request.ContentType ?? "none"}')"));
            else if (ctx.Response.StatusCode == 405 && !ctx.Response.HasStarted)
                await WriteAsync(ctx, new ProblemException(405, ProblemTypes.Validation, "Method not allowed", $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}"));
        }
        catch (ProblemException e)
        {
            await WriteAsync(ctx, e);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (BadHttpRequestException e)
        {
            await WriteAsync(ctx, new ProblemException(e.StatusCode, ProblemTypes.MalformedBody, "The request is malformed", e.Message));
        }
        catch (Exception e)
        {
            var logger = ctx.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Kumo.Api");
            LogUnhandled(logger, ctx.Request.Method, ctx.Request.Path, ctx.TraceIdentifier, e);
            await WriteAsync(ctx, new ProblemException(500, ProblemTypes.Internal, "Internal error",
                $"kumod failed to handle the request (request id {ctx.TraceIdentifier}); see the kumod log"));
        }
    });

    [LoggerMessage(LogLevel.Error, "{Method} {Path} failed (request {RequestId})")]
    private static partial void LogUnhandled(ILogger logger, string method, string path, string requestId, Exception e);

    /// <summary>Reads a JSON body with Kumo's errors for a wrong content type or broken JSON.</summary>
    public static async Task<T?> ReadJsonAsync<T>(HttpRequest request)
    {
        if (request.ContentType is null || !request.ContentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw new ProblemException(415, ProblemTypes.UnsupportedMediaType, "Unsupported media type",
                $"send the body as application/json (got '{request.ContentType ?? "none"}')");
        try
        {
            return await JsonSerializer.DeserializeAsync<T>(request.Body, Json, request.HttpContext.RequestAborted);
        }
        catch (JsonException e)
        {
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is not valid JSON",
                e.LineNumber is null ? e.Message : $"invalid JSON at line {e.LineNumber + 1}, position {e.BytePositionInLine + 1}: {FirstSentence(e.Message)}");
        }
    }

    private static string FirstSentence(string s)
    {
        var i = s.IndexOf(". ", StringComparison.Ordinal);
        return i < 0 ? s : s[..i];
    }
}
