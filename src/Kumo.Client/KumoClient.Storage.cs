using System.Net.Http.Json;
using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    // ---- snapshots

    public async Task<IReadOnlyList<Snapshot>> ListSnapshotsAsync(string instance, CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Snapshot[]>(HttpMethod.Get, InProject($"api/v1/instances/{Escape(instance)}/snapshots"), cancellationToken);

    /// <summary>Starts a snapshot; <paramref name="memory"/> null lets kumod choose (with RAM when the VM runs).</summary>
    public Task<Operation> CreateSnapshotAsync(string instance, string name, bool? memory = null, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Post, InProject($"api/v1/instances/{Escape(instance)}/snapshots"))
        {
            Content = JsonContent.Create(new SnapshotsPost { Name = name, Memory = memory }, options: JsonOptions),
        }, ReadJsonAsync<Operation>, cancellationToken);

    public Task<Operation> RestoreSnapshotAsync(string instance, string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Post, InProject($"api/v1/instances/{Escape(instance)}/snapshots/{Escape(name)}/restore"), cancellationToken);

    public Task<Operation> DeleteSnapshotAsync(string instance, string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Delete, InProject($"api/v1/instances/{Escape(instance)}/snapshots/{Escape(name)}"), cancellationToken);
}
