using System.Collections.Concurrent;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Audit;

/// <summary>
/// Records every request in the audit log exactly once, allowed or not, and answers nobody before the entry is
/// durable (see <see cref="AuditedResponse"/> for how the body is held back). Request bodies and headers are never
/// recorded; query values under secret-looking keys are redacted.
/// </summary>
public sealed partial class AuditMiddleware
{
    private readonly AuditLog _log;
    private readonly TimeProvider _time;
    private readonly ILogger<AuditMiddleware> _logger;

    // What each endpoint is, computed once: metadata lookups stay off the per-request path.
    private readonly ConcurrentDictionary<Endpoint, EndpointFacts> _endpoints = new();

    public AuditMiddleware(AuditLog log, TimeProvider time, ILogger<AuditMiddleware> logger)
    {
        _log = log;
        _time = time;
        _logger = logger;
    }

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        var features = context.Features;
        var originalBody = features.Get<IHttpResponseBodyFeature>()!;
        var originalUpgrade = features.Get<IHttpUpgradeFeature>();
        var originalConnect = features.Get<IHttpExtendedConnectFeature>();
        using var response = new AuditedResponse(this, context, originalBody, _time.GetUtcNow());
        features.Set<IHttpResponseBodyFeature>(response);
        if (originalUpgrade is { IsUpgradableRequest: true })
            features.Set<IHttpUpgradeFeature>(new AuditedUpgrade(response, originalUpgrade));
        if (originalConnect is { IsExtendedConnect: true })
            features.Set<IHttpExtendedConnectFeature>(new AuditedExtendedConnect(response, originalConnect));
        try
        {
            try
            {
                await next(context);
                await response.FinishAsync();
            }
            catch (Exception) when (!response.Recorded)
            {
                // Only an exception that got past UseKumoProblems lands here; Kestrel answers it with a bare 500.
                await response.AbandonAsync();
                throw;
            }
        }
        catch (Exception e) when (response.AuditFailed)
        {
            LogAppendFailed(_logger, context.Request.Method, context.Request.Path, context.TraceIdentifier, e);
        }
        finally
        {
            features.Set(originalBody);
            if (originalUpgrade is not null)
                features.Set(originalUpgrade);
            if (originalConnect is not null)
                features.Set(originalConnect);
        }
        if (response.AuditFailed)
        {
            await Problems.WriteAsync(context, new ProblemException(500, ProblemTypes.Internal, "Audit log unavailable",
                $"kumod could not record this request in the audit log, so it withholds the answer (request id {context.TraceIdentifier}); see the kumod log"));
        }
    }

    /// <summary>Appends the request's entry. <paramref name="outcome"/> and <paramref name="status"/> override what the response says so far.</summary>
    internal Task RecordAsync(AuditedResponse response, string? outcome, int? status)
    {
        var context = response.Context;
        var caller = Caller.Of(context);
        var code = status ?? StatusOf(response);
        if (status is null && outcome is null && context.RequestAborted.IsCancellationRequested)
            code = 499; // the caller went away before the answer
        outcome ??= OutcomeOf(code);
        if (outcome == AuditOutcomes.Allowed && context.GetEndpoint() is { } endpoint && Facts(endpoint).Keepalive)
            return Task.CompletedTask;
        return _log.AppendAsync(new AuditRow
        {
            Time = AuditChain.FormatTime(response.Arrived),
            UserId = caller.UserId,
            UserName = caller.UserName,
            Source = caller.SourceAddress,
            Method = context.Request.Method,
            Action = ActionOf(context),
            Target = AuditTarget.Of(context.Request),
            Outcome = outcome,
            Status = code,
            RequestId = context.TraceIdentifier,
        }, CancellationToken.None);
    }

    internal bool IsStreamingCall(HttpContext context) => context.GetEndpoint() is { } e && Facts(e).Streaming;

    internal static string OutcomeOf(int status) => status switch
    {
        StatusCodes.Status401Unauthorized or StatusCodes.Status403Forbidden => AuditOutcomes.Denied,
        < 400 => AuditOutcomes.Allowed,
        _ => AuditOutcomes.Error,
    };

    /// <summary>The HTTP status, or for a gRPC call answered trailers-only, the HTTP equivalent of its grpc-status.</summary>
    private static int StatusOf(AuditedResponse response)
    {
        var http = response.Context.Response;
        if (response.IsGrpc && http.Headers.TryGetValue("grpc-status", out var grpc) && int.TryParse(grpc.ToString(), out var code))
            return GrpcToHttp((StatusCode)code);
        return http.StatusCode;
    }

    /// <summary>The usual mapping (as in grpc-gateway), so audit outcomes of agent calls read like HTTP ones.</summary>
    internal static int GrpcToHttp(StatusCode code) => code switch
    {
        StatusCode.OK => 200,
        StatusCode.Cancelled => 499,
        StatusCode.InvalidArgument or StatusCode.FailedPrecondition or StatusCode.OutOfRange => 400,
        StatusCode.DeadlineExceeded => 504,
        StatusCode.NotFound => 404,
        StatusCode.AlreadyExists or StatusCode.Aborted => 409,
        StatusCode.PermissionDenied => 403,
        StatusCode.Unauthenticated => 401,
        StatusCode.ResourceExhausted => 429,
        StatusCode.Unimplemented => 501,
        StatusCode.Unavailable => 503,
        _ => 500,
    };

    private string ActionOf(HttpContext context)
    {
        var endpoint = context.GetEndpoint();
        if (endpoint is null)
            return context.Request.Method + " (no route)";
        return Facts(endpoint).Action ?? (endpoint is RouteEndpoint route
            ? $"{context.Request.Method} {route.RoutePattern.RawText}"
            : $"{context.Request.Method} (refused by routing)");
    }

    private EndpointFacts Facts(Endpoint endpoint) => _endpoints.GetOrAdd(endpoint, static e =>
    {
        var permission = e.Metadata.GetMetadata<Permission>();
        var grpc = e.Metadata.GetMetadata<GrpcMethodMetadata>();
        var action = permission is null ? null
            : grpc is null ? $"{permission.Kind}.{permission.Verb}"
            : $"{permission.Kind}.{grpc.Method.Name}";
        return new EndpointFacts(action, grpc is not null && grpc.Method.Type != MethodType.Unary, e.Metadata.GetMetadata<KeepaliveAttribute>() is not null);
    });

    /// <param name="Action">kind.verb (agent.METHOD for gRPC); null when the endpoint declares no permission.</param>
    /// <param name="Streaming">A gRPC method that streams (its entry is written before the stream starts).</param>
    /// <param name="Keepalive">An agent keepalive or telemetry call (<see cref="KeepaliveAttribute"/>): not recorded when it succeeds.</param>
    private sealed record EndpointFacts(string? Action, bool Streaming, bool Keepalive);

    [LoggerMessage(LogLevel.Error, "audit: could not record {Method} {Path} (request {RequestId}); the answer was withheld")]
    private static partial void LogAppendFailed(ILogger logger, string method, string path, string requestId, Exception e);
}

public static class AuditMiddlewareExtensions
{
    /// <summary>Records every request in the audit log; see KumoServer.Build for where it must sit.</summary>
    public static IApplicationBuilder UseKumoAudit(this IApplicationBuilder app)
    {
        var audit = new AuditMiddleware(
            app.ApplicationServices.GetRequiredService<AuditLog>(),
            app.ApplicationServices.GetRequiredService<TimeProvider>(),
            app.ApplicationServices.GetRequiredService<ILogger<AuditMiddleware>>());
        return app.Use(next => context => audit.InvokeAsync(context, next));
    }
}
