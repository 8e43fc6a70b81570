using System.Net.Http.Json;
using Kumo.Core;

namespace Kumo.Client;

/// <summary>Identity: login and sessions, API tokens, users, projects and quotas.</summary>
public sealed partial class KumoClient
{
    /// <summary>Quota scopes: a user's own limits or a project's.</summary>
    public const string UserScope = "user";

    public const string ProjectScope = "project";

    /// <summary>Marks a request that must go without the bearer token (login: a stale token would be refused first).</summary>
    private static readonly HttpRequestOptionsKey<bool> WithoutToken = new("kumo.without-token");

    // ---- session

    /// <summary>Exchanges a user name and password for a session token. Sent without <see cref="Token"/>.</summary>
    public Task<LoginResponse> LoginAsync(string username, string password, CancellationToken cancellationToken = default) =>
        SendAsync(() =>
        {
            var request = JsonRequest(HttpMethod.Post, "api/v1/auth/login", new LoginRequest { Username = username, Password = password });
            request.Options.Set(WithoutToken, true);
            return request;
        }, ReadJsonAsync<LoginResponse>, cancellationToken);

    /// <summary>Revokes the token this client sends.</summary>
    public Task LogoutAsync(CancellationToken cancellationToken = default) =>
        SendNoContentAsync(HttpMethod.Post, "api/v1/auth/logout", null, cancellationToken);

    public Task<User> WhoAmIAsync(CancellationToken cancellationToken = default) =>
        SendJsonAsync<User>(HttpMethod.Get, "api/v1/auth/whoami", cancellationToken);

    /// <summary>Changes the caller's password; kumod ends the caller's other sessions (this one too).</summary>
    public Task ChangePasswordAsync(string current, string newPassword, CancellationToken cancellationToken = default) =>
        SendNoContentAsync(HttpMethod.Post, "api/v1/auth/password", new PasswordChange { Current = current, New = newPassword }, cancellationToken);

    // ---- API tokens

    public async Task<IReadOnlyList<ApiToken>> ListTokensAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<ApiToken[]>(HttpMethod.Get, "api/v1/tokens", cancellationToken);

    /// <summary>Creates an API token; its <see cref="ApiToken.Secret"/> is in this answer only.</summary>
    public Task<ApiToken> CreateTokenAsync(TokensPost post, CancellationToken cancellationToken = default) =>
        SendJsonAsync<ApiToken>(HttpMethod.Post, "api/v1/tokens", post, cancellationToken);

    public Task RevokeTokenAsync(string id, CancellationToken cancellationToken = default) =>
        SendNoContentAsync(HttpMethod.Delete, $"api/v1/tokens/{Escape(id)}", null, cancellationToken);

    // ---- users (admin)

    public async Task<IReadOnlyList<User>> ListUsersAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<User[]>(HttpMethod.Get, "api/v1/users", cancellationToken);

    public Task<User> GetUserAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<User>(HttpMethod.Get, $"api/v1/users/{Escape(name)}", cancellationToken);

    /// <summary>Creates a local user; without a password kumod generates one and returns it once in <see cref="UserCreated.Password"/>.</summary>
    public Task<UserCreated> CreateUserAsync(UsersPost post, CancellationToken cancellationToken = default) =>
        SendJsonAsync<UserCreated>(HttpMethod.Post, "api/v1/users", post, cancellationToken);

    public Task<User> DisableUserAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<User>(HttpMethod.Post, $"api/v1/users/{Escape(name)}/disable", cancellationToken);

    public Task<User> EnableUserAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<User>(HttpMethod.Post, $"api/v1/users/{Escape(name)}/enable", cancellationToken);

    /// <summary>
    /// Deletes a user. kumod refuses while they own instances unless <paramref name="resources"/> is "delete" or
    /// "reassign" (then <paramref name="reassignTo"/> names the user who receives them).
    /// </summary>
    public Task DeleteUserAsync(string name, string? resources = null, string? reassignTo = null, CancellationToken cancellationToken = default)
    {
        var query = new List<string>();
        if (resources is not null)
            query.Add("resources=" + Uri.EscapeDataString(resources));
        if (reassignTo is not null)
            query.Add("to=" + Uri.EscapeDataString(reassignTo));
        var path = $"api/v1/users/{Escape(name)}" + (query.Count == 0 ? "" : "?" + string.Join('&', query));
        return SendNoContentAsync(HttpMethod.Delete, path, null, cancellationToken);
    }

    // ---- projects

    /// <summary>The projects the caller belongs to (every project, for an admin).</summary>
    public async Task<IReadOnlyList<Project>> ListProjectsAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Project[]>(HttpMethod.Get, "api/v1/projects", cancellationToken);

    public Task<Project> CreateProjectAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Project>(HttpMethod.Post, "api/v1/projects", new ProjectsPost { Name = name }, cancellationToken);

    public Task<Project> AddProjectMemberAsync(string project, string user, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Project>(HttpMethod.Post, $"api/v1/projects/{Escape(project)}/members", new MemberPost { User = user }, cancellationToken);

    public Task<Project> RemoveProjectMemberAsync(string project, string user, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Project>(HttpMethod.Delete, $"api/v1/projects/{Escape(project)}/members/{Escape(user)}", cancellationToken);

    // ---- quotas

    /// <summary>Limits and usage of a user or project (<see cref="UserScope"/> or <see cref="ProjectScope"/>).</summary>
    public Task<Quota> GetQuotaAsync(string scope, string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Quota>(HttpMethod.Get, $"api/v1/quotas/{Escape(scope)}/{Escape(name)}", cancellationToken);

    /// <summary>Changes the limits given in <paramref name="put"/>; omitted ones keep their value.</summary>
    public Task<Quota> SetQuotaAsync(string scope, string name, QuotaPut put, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Quota>(HttpMethod.Put, $"api/v1/quotas/{Escape(scope)}/{Escape(name)}", put, cancellationToken);

    // ---- plumbing

    private static HttpRequestMessage JsonRequest<TBody>(HttpMethod method, string path, TBody body) =>
        new(method, path) { Content = JsonContent.Create(body, options: JsonOptions) };

    private Task<T> SendJsonAsync<T>(HttpMethod method, string path, object body, CancellationToken cancellationToken) =>
        SendAsync(() => JsonRequest(method, path, body), ReadJsonAsync<T>, cancellationToken);

    /// <summary>For answers without a body (204); the result only says the call succeeded.</summary>
    private Task<bool> SendNoContentAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken) =>
        SendAsync(() => body is null ? new HttpRequestMessage(method, path) : JsonRequest(method, path, body),
            static (_, _) => Task.FromResult(true), cancellationToken);
}
