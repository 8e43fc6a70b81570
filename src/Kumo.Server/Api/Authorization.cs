using Kumo.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>What an endpoint does, declared next to it: the single input of the authorization decision.</summary>
public sealed record Permission(string Kind, string Verb);

/// <summary>
/// The one place every request passes. Deny by default: an endpoint that declares no <see cref="Permission"/> is
/// refused, so a new endpoint cannot ship without a policy. Until the identity issue lands, every declared
/// permission is granted to the local caller.
/// </summary>
public static class Authorization
{
    public static TBuilder Requires<TBuilder>(this TBuilder builder, string kind, string verb) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new Permission(kind, verb));

    public static IApplicationBuilder UseKumoAuthorization(this IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        // Only route endpoints run Kumo code. Routing answers a wrong method or content type with endpoints of its
        // own (405/415) that are not route endpoints, carry no metadata and only set a status code.
        var endpoint = ctx.GetEndpoint();
        if (endpoint is RouteEndpoint && endpoint.Metadata.GetMetadata<Permission>() is null)
        {
            await Problems.WriteAsync(ctx, new ProblemException(403, ProblemTypes.Forbidden, "Forbidden",
                "this endpoint has no authorization policy and is refused"));
            return;
        }
        await next(ctx);
    });
}
