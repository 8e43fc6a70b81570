using Kumo.Core;
using Kumo.Server.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Api;

/// <summary>What an endpoint does, declared next to it: the single input of the authorization decision.</summary>
public sealed record Permission(string Kind, string Verb);

/// <summary>
/// Authentication (who is calling) and authorization (may they call this endpoint), the one place every request
/// passes. Deny by default: a route endpoint that declares no <see cref="Permission"/>, or one whose permission
/// has no line in <see cref="Policy.Table"/>, is refused.
/// </summary>
public static class Authorization
{
    /// <summary>Marks connections that arrived on the agent endpoint (set by Kestrel's connection middleware).</summary>
    public const string AgentEndpointItem = "kumo.agent-endpoint";

    public static TBuilder Requires<TBuilder>(this TBuilder builder, string kind, string verb) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new Permission(kind, verb));

    /// <summary>
    /// Sets the <see cref="Caller"/> from a bearer token; a token that is present but not valid is a 401.
    /// With <paramref name="devCaller"/> (kumod --dev-no-auth-no-audit, loopback only) no token is read: every REST
    /// request is that caller.
    /// </summary>
    public static IApplicationBuilder UseKumoAuthentication(this IApplicationBuilder app, Caller? devCaller = null) => app.Use(async (ctx, next) =>
    {
        var source = ctx.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var items = ctx.Features.Get<IConnectionItemsFeature>()?.Items;
        if (items is not null && items.ContainsKey(AgentEndpointItem))
        {
            new Caller("agent", "agent", Roles.Agent, source).AttachTo(ctx);
        }
        else if (devCaller is not null)
        {
            devCaller.AttachTo(ctx);
        }
        else if (BearerToken(ctx) is { } token)
        {
            var caller = await ctx.RequestServices.GetRequiredService<TokenService>().AuthenticateAsync(token, source, ctx.RequestAborted);
            if (caller is null)
            {
                await Problems.WriteAsync(ctx, new ProblemException(401, ProblemTypes.Unauthorized, "Not authenticated",
                    "the token is unknown, expired or revoked; log in again (kumo login)"));
                return;
            }
            caller.AttachTo(ctx);
        }
        else
        {
            Caller.Anonymous(source).AttachTo(ctx);
        }
        await next(ctx);
    });

    /// <param name="devBypass">kumod --dev-no-auth-no-audit: REST requests skip the decision; agent-endpoint calls never do.</param>
    public static IApplicationBuilder UseKumoAuthorization(this IApplicationBuilder app, bool devBypass = false) => app.Use(async (ctx, next) =>
    {
        if (devBypass && Caller.Of(ctx).Role != Roles.Agent)
        {
            await next(ctx);
            return;
        }
        // Only route endpoints run Kumo code. Routing answers a wrong method or content type with endpoints of its
        // own (405/415) that are not route endpoints, carry no metadata and only set a status code.
        if (ctx.GetEndpoint() is RouteEndpoint endpoint)
        {
            var permission = endpoint.Metadata.GetMetadata<Permission>();
            var decision = permission is null ? Policy.Decision.Forbidden : Policy.Decide(permission.Kind, permission.Verb, Caller.Of(ctx));
            if (decision == Policy.Decision.Unauthenticated)
            {
                await Problems.WriteAsync(ctx, new ProblemException(401, ProblemTypes.Unauthorized, "Not authenticated",
                    "log in first (kumo login) and send the token as 'Authorization: Bearer TOKEN'"));
                return;
            }
            if (decision == Policy.Decision.Forbidden)
            {
                await Problems.WriteAsync(ctx, new ProblemException(403, ProblemTypes.Forbidden, "Forbidden",
                    permission is null ? "this endpoint has no authorization policy and is refused"
                    : $"{permission.Kind}.{permission.Verb} is not allowed for your role"));
                return;
            }
        }
        await next(ctx);
    });

    /// <summary>The bearer token of the request, if any (header, or access_token for browser WebSockets and SSE).</summary>
    public static string? BearerToken(HttpContext ctx)
    {
        var header = ctx.Request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return header[7..].Trim();
        return null;
    }
}
