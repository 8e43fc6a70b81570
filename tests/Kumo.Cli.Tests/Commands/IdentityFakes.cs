using System.Collections.Concurrent;
using Kumo.Core;
using Microsoft.AspNetCore.Builder;

namespace Kumo.Cli.Tests.Commands;

/// <summary>Canned identity answers for the fake kumod, and a record of the bearer token each request carried.</summary>
internal static class IdentityFakes
{
    public static User User(string name = "alice", string role = "user") => new()
    {
        Id = "01JU" + name.ToUpperInvariant(),
        Name = name,
        Role = role,
        Source = "local",
        Projects = [name],
        CreatedAt = DateTimeOffset.UtcNow,
    };

    /// <summary>Records "METHOD /path?query" → Authorization header of every request.</summary>
    public static ConcurrentDictionary<string, string> RecordAuthorization(WebApplication app)
    {
        var seen = new ConcurrentDictionary<string, string>();
        app.Use((context, next) =>
        {
            seen[$"{context.Request.Method} {context.Request.Path}{context.Request.QueryString}"] = context.Request.Headers.Authorization.ToString();
            return next(context);
        });
        return seen;
    }

    /// <summary>A config file under <paramref name="dir"/> with the given lines.</summary>
    public static string Config(TempDir dir, params string[] lines)
    {
        var path = dir.File("kumo", "config");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, lines.Length == 0 ? "" : string.Join('\n', lines) + "\n");
        return path;
    }
}
