using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>Tenant networks of <see cref="Project"/> (or the caller's personal project).</summary>
    public async Task<IReadOnlyList<Network>> ListNetworksAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Network[]>(HttpMethod.Get, InProject("api/v1/networks"), cancellationToken);

    public Task<Network> GetNetworkAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Network>(HttpMethod.Get, InProject($"api/v1/networks/{Escape(name)}"), cancellationToken);

    /// <summary>Creates a network; kumod refuses a bad CIDR (validation) and a subnet overlapping another of the project (subnet-overlap).</summary>
    public Task<Network> CreateNetworkAsync(NetworksPost post, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Network>(HttpMethod.Post, InProject("api/v1/networks"), post, cancellationToken);

    /// <summary>Deletes a network; refused (network-in-use) while instances are attached.</summary>
    public Task DeleteNetworkAsync(string name, CancellationToken cancellationToken = default) =>
        SendNoContentAsync(HttpMethod.Delete, InProject($"api/v1/networks/{Escape(name)}"), null, cancellationToken);
}
