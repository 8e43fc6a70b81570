using Kumo.Core;
using Kumo.Server.Identity;
using Kumo.Server.Templates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Kumo.Server.Api;

/// <summary>libvirt domain templates: everyone may read them (to choose one), only admins add or remove them.</summary>
internal static class TemplateEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var g = api.MapGroup("/templates").WithTags("templates");

        g.MapGet("/", async (TemplateService s, CancellationToken ct) => await s.ListAsync(ct))
            .Requires("template", "list");

        g.MapGet("/{name}", async (TemplateService s, string name, CancellationToken ct) => await s.GetAsync(name, ct))
            .Requires("template", "get");

        g.MapPost("/", async (TemplateService s, HttpContext http, CancellationToken ct) =>
        {
            var t = await s.AddAsync(Caller.Of(http), await Problems.ReadJsonAsync<TemplatesPost>(http.Request), ct);
            return TypedResults.Created($"/api/v1/templates/{t.Name}", t);
        }).Accepts<TemplatesPost>("application/json").Produces<DomainTemplate>(201).Requires("template", "create");

        g.MapDelete("/{name}", async (TemplateService s, string name, CancellationToken ct) =>
        {
            await s.DeleteAsync(name, ct);
            return TypedResults.NoContent();
        }).Requires("template", "delete");
    }
}
