using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    public async Task<IReadOnlyList<Cluster>> ListClustersAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Cluster[]>(HttpMethod.Get, InProject("api/v1/clusters"), cancellationToken);

    public Task<Cluster> GetClusterAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Cluster>(HttpMethod.Get, InProject($"api/v1/clusters/{Escape(name)}"), cancellationToken);

    /// <summary>Creates (or reserves) a cluster; the operation ends when every member runs or the cluster was rolled back.</summary>
    public Task<Operation> CreateClusterAsync(ClustersPost post, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Post, InProject("api/v1/clusters"), post, cancellationToken);

    public Task<Operation> ScaleClusterAsync(string name, int nodes, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Post, InProject($"api/v1/clusters/{Escape(name)}/scale"), new ClusterScale { Nodes = nodes }, cancellationToken);

    /// <summary>Deletes a cluster with every member and the networks it made.</summary>
    public Task<Operation> DeleteClusterAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Delete, InProject($"api/v1/clusters/{Escape(name)}"), cancellationToken);

    public async Task<IReadOnlyList<Reservation>> ListReservationsAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Reservation[]>(HttpMethod.Get, InProject("api/v1/reservations"), cancellationToken);

    public Task<Reservation> GetReservationAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Reservation>(HttpMethod.Get, InProject($"api/v1/reservations/{Escape(name)}"), cancellationToken);

    /// <summary>Cancels a scheduled reservation or ends a running one now (its VM or cluster is deleted).</summary>
    public Task<Operation> DeleteReservationAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Delete, InProject($"api/v1/reservations/{Escape(name)}"), cancellationToken);
}
