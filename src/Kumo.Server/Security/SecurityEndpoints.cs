using Kumo.Core;
using Kumo.Server.Api;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Security;

internal static class SecurityEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        // Public on purpose: a client fetches it before it trusts anything, and checks its fingerprint out of band.
        api.MapGet("/ca", (ServerPki pki) => Results.Text(pki.Ca.ExportCertificatePem(), "application/x-pem-file"))
            .WithTags("security").Produces<string>(200, "application/x-pem-file").Requires("ca", "get");

        api.MapPost("/nodes/tokens", async (JoinTokens tokens, ServerPki pki, NodeTokensPost? body, CancellationToken ct) =>
        {
            var ttl = JoinTokens.DefaultTtl;
            if (body?.Ttl is { } text)
            {
                if (!Durations.TryParse(text, out ttl, out var error))
                    throw ProblemException.Validation("ttl", error!);
                if (ttl > JoinTokens.MaxTtl)
                    throw ProblemException.Validation("ttl", $"ttl {text} is longer than the maximum of 7d");
            }
            var (token, expires) = await tokens.CreateAsync(ttl, ct);
            return TypedResults.Json(new NodeToken { Token = token, ExpiresAt = expires, CaFingerprint = pki.CaFingerprint }, statusCode: 201);
        }).WithTags("nodes").Produces<NodeToken>(201).Requires("node", "add-token");
    }
}
