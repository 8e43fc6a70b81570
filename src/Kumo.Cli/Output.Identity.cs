using System.Globalization;
using Kumo.Core;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Kumo.Cli;

/// <summary>Human views of users, tokens, projects and quotas.</summary>
internal sealed partial class Output
{
    public IRenderable Users(IReadOnlyList<User> users)
    {
        var table = Table("NAME", "ROLE", "SOURCE", "STATE", "PROJECTS", "CREATED");
        foreach (var u in users)
            AddRow(table, u.Name, u.Role, u.Source, u.Disabled ? "disabled" : "active", string.Join(',', u.Projects), Time(u.CreatedAt));
        return table;
    }

    public static IRenderable User(User u) => Details(
        ("Name", u.Name),
        ("Role", u.Role),
        ("Source", u.Source),
        ("State", u.Disabled ? "disabled" : "active"),
        ("Projects", string.Join(", ", u.Projects)),
        ("Created", Time(u.CreatedAt)),
        ("Id", u.Id));

    public IRenderable Tokens(IReadOnlyList<ApiToken> tokens)
    {
        var table = Table("ID", "NAME", "KIND", "CREATED", "EXPIRES", "LAST USED");
        foreach (var t in tokens)
            AddRow(table, t.Id, t.Name, t.Kind, Time(t.CreatedAt), t.ExpiresAt is null ? "never" : Time(t.ExpiresAt), Time(t.LastUsedAt));
        return table;
    }

    public IRenderable Projects(IReadOnlyList<Project> projects)
    {
        var table = Table("NAME", "TYPE", "MEMBERS", "CREATED");
        foreach (var p in projects)
            AddRow(table, p.Name, p.PersonalOf is null ? "shared" : $"personal ({p.PersonalOf})", string.Join(',', p.Members), Time(p.CreatedAt));
        return table;
    }

    public static IRenderable Project(Project p) => Details(
        ("Name", p.Name),
        ("Type", p.PersonalOf is null ? "shared" : $"personal ({p.PersonalOf})"),
        ("Members", string.Join(", ", p.Members)),
        ("Created", Time(p.CreatedAt)));

    /// <summary>A heading, then one row per resource with usage and limit side by side.</summary>
    public IRenderable Quota(Quota q)
    {
        var table = Table("RESOURCE", "USED", "LIMIT");
        static string Count(int? n) => n?.ToString(CultureInfo.InvariantCulture) ?? "0";
        static string Limit(string? text) => text ?? "unlimited";
        AddRow(table, "vms", Count(q.Used.Vms), Limit(q.Limits.Vms?.ToString(CultureInfo.InvariantCulture)));
        AddRow(table, "containers", Count(q.Used.Containers), Limit(q.Limits.Containers?.ToString(CultureInfo.InvariantCulture)));
        AddRow(table, "vcpus", Count(q.Used.Vcpus), Limit(q.Limits.Vcpus?.ToString(CultureInfo.InvariantCulture)));
        AddRow(table, "memory", Size(q.Used.MemoryBytes ?? 0), Limit(q.Limits.MemoryBytes is { } m ? Size(m) : null));
        AddRow(table, "disk", Size(q.Used.DiskBytes ?? 0), Limit(q.Limits.DiskBytes is { } d ? Size(d) : null));
        return new Rows(new Text($"quota of {q.Scope} {q.Name}"), table);
    }

    /// <summary>A credential kumod shows once, with the warning that it cannot be shown again (scripts read it from -o json).</summary>
    public static IRenderable Secret(string heading, string label, string secret) =>
        Line($"{heading}\n{label} (shown only now; it cannot be shown again): {secret}");
}
