namespace Kumo.Server.Identity;

/// <summary>Who may call an endpoint at all. Ownership and membership are checked by the service on top.</summary>
public enum Access
{
    /// <summary>Anyone, logged in or not.</summary>
    Anonymous,

    /// <summary>A node agent on the agent endpoint.</summary>
    Agent,

    /// <summary>Any logged-in user; the service limits them to their own projects and resources.</summary>
    User,

    /// <summary>Administrators only.</summary>
    Admin,

    /// <summary>Administrators, and metrics tokens (kind metrics) of any user, which see what their user may see.</summary>
    Scrape,
}

/// <summary>
/// The policy table: resource kind × verb → who may call. Endpoints declare their (kind, verb) next to
/// themselves; a pair missing here is refused (deny by default), so a new endpoint needs a line here too.
/// </summary>
public static class Policy
{
    public static readonly IReadOnlyDictionary<(string Kind, string Verb), Access> Table = new Dictionary<(string, string), Access>
    {
        [("auth", "login")] = Access.Anonymous,
        [("ca", "get")] = Access.Anonymous,
        [("auth", "whoami")] = Access.User,
        [("auth", "logout")] = Access.User,
        [("auth", "password")] = Access.User,
        [("token", "list")] = Access.User,
        [("token", "create")] = Access.User,
        [("token", "revoke")] = Access.User,
        [("server", "get")] = Access.User,
        [("openapi", "get")] = Access.User,
        [("node", "list")] = Access.User,
        [("node", "get")] = Access.User,
        [("node", "drain")] = Access.Admin,
        [("node", "remove")] = Access.Admin,
        [("node", "add-token")] = Access.Admin,
        [("image", "list")] = Access.User,
        [("image", "get")] = Access.User,
        [("image", "import")] = Access.User,
        [("image", "export")] = Access.User,
        [("image", "delete")] = Access.User,
        [("image", "build")] = Access.User,
        // Base images are shared by every project and take minutes of the control plane's machine to build.
        [("image", "build-base")] = Access.Admin,
        [("instance", "list")] = Access.User,
        [("instance", "get")] = Access.User,
        [("instance", "create")] = Access.User,
        [("instance", "update")] = Access.User,
        [("instance", "start")] = Access.User,
        [("instance", "stop")] = Access.User,
        [("instance", "restart")] = Access.User,
        [("instance", "destroy")] = Access.User,
        [("instance", "delete")] = Access.User,
        [("network", "list")] = Access.User,
        [("network", "get")] = Access.User,
        [("network", "create")] = Access.User,
        [("network", "delete")] = Access.User,
        [("cluster", "list")] = Access.User,
        [("cluster", "get")] = Access.User,
        [("cluster", "create")] = Access.User,
        [("cluster", "scale")] = Access.User,
        [("cluster", "delete")] = Access.User,
        [("reservation", "list")] = Access.User,
        [("reservation", "get")] = Access.User,
        [("reservation", "delete")] = Access.User,
        [("port-forward", "list")] = Access.User,
        [("port-forward", "create")] = Access.User,
        [("port-forward", "delete")] = Access.User,
        [("instance", "metrics")] = Access.User,
        // Where a guest runs is the operator's decision.
        [("instance", "migrate")] = Access.Admin,
        // Monitoring: logged-in users see nodes and the instances of their projects; admins see everything.
        // The Prometheus scrape takes an admin or a metrics token: a scraper's config then holds a credential that can
        // read metrics and nothing else.
        [("metrics", "scrape")] = Access.Scrape,
        [("metrics", "list")] = Access.User,
        [("snapshot", "list")] = Access.User,
        [("snapshot", "create")] = Access.User,
        [("snapshot", "restore")] = Access.User,
        [("snapshot", "delete")] = Access.User,
        [("volume", "list")] = Access.User,
        [("volume", "get")] = Access.User,
        [("volume", "create")] = Access.User,
        [("volume", "attach")] = Access.User,
        [("volume", "detach")] = Access.User,
        [("volume", "resize")] = Access.User,
        [("volume", "delete")] = Access.User,
        // Owner and admins only; the service refuses other users (404 outside their projects, 403 inside).
        [("instance", "console")] = Access.User,
        [("instance", "debug")] = Access.User,
        // Containers: the same rule (a shell in someone's container is their console).
        [("instance", "logs")] = Access.User,
        [("instance", "exec")] = Access.User,
        [("instance", "attach")] = Access.User,
        // Domain templates fix what a VM may be (network, disks): users read them to choose one, admins own them.
        [("template", "list")] = Access.User,
        [("template", "get")] = Access.User,
        [("template", "create")] = Access.Admin,
        [("template", "delete")] = Access.Admin,
        [("operation", "get")] = Access.User,
        [("operation", "watch")] = Access.User,
        [("project", "list")] = Access.User,
        [("project", "create")] = Access.Admin,
        [("project", "member")] = Access.Admin,
        [("quota", "get")] = Access.User,
        [("quota", "set")] = Access.Admin,
        [("user", "list")] = Access.Admin,
        [("user", "get")] = Access.Admin,
        [("user", "create")] = Access.Admin,
        [("user", "disable")] = Access.Admin,
        [("user", "delete")] = Access.Admin,
        [("admin", "backup")] = Access.Admin,
        [("admin", "restore")] = Access.Admin,
        [("usage", "list")] = Access.User,
        [("audit", "list")] = Access.Admin,
        [("audit", "verify")] = Access.Admin,
        [("audit", "export")] = Access.Admin,
        [("agent", "control")] = Access.Agent,
        // The reverse proxy's own port: what it forwards is a user's published web app, public by design, and carries
        // no Kumo identity. The table of every user's routes is for operators.
        [("proxy", "forward")] = Access.Anonymous,
        [("proxy", "routes")] = Access.Admin,
    };

    public enum Decision
    {
        Allow,

        /// <summary>Needs a login (401).</summary>
        Unauthenticated,

        /// <summary>Logged in, but not allowed (403).</summary>
        Forbidden,
    }

    public static Decision Decide(string kind, string verb, Caller caller)
    {
        if (!Table.TryGetValue((kind, verb), out var access)) return Decision.Forbidden;
        return access switch
        {
            Access.Anonymous => Decision.Allow,
            Access.Agent => caller.Role == Roles.Agent ? Decision.Allow : caller.IsAnonymous ? Decision.Unauthenticated : Decision.Forbidden,
            _ when caller.IsAnonymous || caller.Role == Roles.Agent => Decision.Unauthenticated,
            // A metrics token is good for the scrape only, whoever its user is.
            _ when caller.MetricsOnly => access == Access.Scrape ? Decision.Allow : Decision.Forbidden,
            Access.Scrape => caller.IsAdmin ? Decision.Allow : Decision.Forbidden,
            Access.User => Decision.Allow,
            Access.Admin => caller.IsAdmin ? Decision.Allow : Decision.Forbidden,
            _ => Decision.Forbidden,
        };
    }
}
