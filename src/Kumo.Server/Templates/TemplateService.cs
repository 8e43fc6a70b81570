using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;

namespace Kumo.Server.Templates;

/// <summary>
/// Admin-owned libvirt domain templates. They are checked when added (see <see cref="DomainTemplates.Validate"/>), so a
/// VM made from one can only differ from another in its name, CPUs, memory and image.
/// </summary>
public sealed class TemplateService(Database db, TimeProvider time)
{
    public Task<List<DomainTemplate>> ListAsync(CancellationToken ct) =>
        db.ReadAsync(c => c.Query<TemplateRow>("SELECT * FROM domain_templates ORDER BY name").Select(r => r.ToApi()).ToList(), ct);

    public async Task<DomainTemplate> GetAsync(string name, CancellationToken ct) =>
        await FindAsync(name, ct) ?? throw ProblemException.NotFound("template", name);

    public async Task<DomainTemplate?> FindAsync(string name, CancellationToken ct) =>
        (await db.ReadAsync(c => c.QuerySingleOrDefault<TemplateRow>("SELECT * FROM domain_templates WHERE name = @name", new { name }), ct))?.ToApi();

    public async Task<DomainTemplate> AddAsync(Caller caller, TemplatesPost? body, CancellationToken ct)
    {
        if (body is null)
            throw new ProblemException(400, ProblemTypes.MalformedBody, "The request body is missing", "send a JSON object");
        var errors = new Dictionary<string, string[]>();
        if (Names.Validate(body.Name, "template name") is { } nameError) errors["name"] = [nameError];
        if (body.Description is { Length: > 1024 }) errors["description"] = ["description is longer than 1024 characters"];
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        var problems = DomainTemplates.Validate(body.Xml);
        if (problems.Count > 0)
            throw new ProblemException(422, ProblemTypes.TemplateInvalid, "Kumo refuses this domain template", string.Join("; ", problems))
            { Errors = new Dictionary<string, string[]> { ["xml"] = problems.ToArray() } };
        var row = new TemplateRow { Name = body.Name!, Description = body.Description, Xml = body.Xml!, CreatedBy = caller.UserName, CreatedAt = Json.Now(time) };
        try
        {
            await db.WriteAsync(ctx => ctx.Connection.Execute(
                "INSERT INTO domain_templates (name, description, xml, created_by, created_at) VALUES (@Name, @Description, @Xml, @CreatedBy, @CreatedAt)",
                row, ctx.Transaction), ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw ProblemException.Conflict($"a template named '{row.Name}' already exists; remove it first");
        }
        return row.ToApi();
    }

    /// <summary>VMs made from the template keep their copy of it, so removing one never touches them.</summary>
    public async Task DeleteAsync(string name, CancellationToken ct)
    {
        var gone = await db.WriteAsync(ctx => ctx.Connection.Execute("DELETE FROM domain_templates WHERE name = @name", new { name }, ctx.Transaction), ct);
        if (gone == 0) throw ProblemException.NotFound("template", name);
    }

    private sealed class TemplateRow
    {
        public string Name { get; set; } = "";
        public string? Description { get; set; }
        public string Xml { get; set; } = "";
        public string? CreatedBy { get; set; }
        public string CreatedAt { get; set; } = "";

        public DomainTemplate ToApi() => new() { Name = Name, Description = Description, Xml = Xml, CreatedBy = CreatedBy, CreatedAt = Json.Time(CreatedAt) };
    }
}
