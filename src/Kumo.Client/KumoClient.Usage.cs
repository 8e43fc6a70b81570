using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>
    /// Allocated usage per (user, project) over [from, to) (RFC 3339); null filters mean kumod's defaults (everyone
    /// the caller may see, the last 30 days up to now).
    /// </summary>
    public async Task<IReadOnlyList<UsageRecord>> ListUsageAsync(string? user = null, string? project = null, string? from = null,
        string? to = null, CancellationToken cancellationToken = default)
    {
        var query = new List<string>();
        if (user is not null)
            query.Add("user=" + Uri.EscapeDataString(user));
        if (project is not null)
            query.Add("project=" + Uri.EscapeDataString(project));
        if (from is not null)
            query.Add("from=" + Uri.EscapeDataString(from));
        if (to is not null)
            query.Add("to=" + Uri.EscapeDataString(to));
        var path = query.Count == 0 ? "api/v1/usage" : "api/v1/usage?" + string.Join('&', query);
        return await SendJsonAsync<UsageRecord[]>(HttpMethod.Get, path, cancellationToken);
    }
}
