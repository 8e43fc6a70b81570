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

    // ---- volumes

    public async Task<IReadOnlyList<Volume>> ListVolumesAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Volume[]>(HttpMethod.Get, InProject("api/v1/volumes"), cancellationToken);

    public Task<Volume> GetVolumeAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Volume>(HttpMethod.Get, InProject($"api/v1/volumes/{Escape(name)}"), cancellationToken);

    public Task<Volume> CreateVolumeAsync(VolumesPost post, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Post, InProject("api/v1/volumes"))
        {
            Content = JsonContent.Create(post, options: JsonOptions),
        }, ReadJsonAsync<Volume>, cancellationToken);

    public Task<Operation> AttachVolumeAsync(string name, string instance, CancellationToken cancellationToken = default) =>
        VolumeActionAsync(name, "attach", new VolumeAction { Instance = instance }, cancellationToken);

    public Task<Operation> DetachVolumeAsync(string name, string? instance = null, CancellationToken cancellationToken = default) =>
        VolumeActionAsync(name, "detach", new VolumeAction { Instance = instance }, cancellationToken);

    /// <summary>Grows a volume to <paramref name="size"/> (e.g. "4G"); volumes never shrink.</summary>
    public Task<Operation> ResizeVolumeAsync(string name, string size, CancellationToken cancellationToken = default) =>
        VolumeActionAsync(name, "resize", new VolumeAction { Size = size }, cancellationToken);

    /// <summary>Deletes a volume; kumod refuses (volume-in-use) while it is attached.</summary>
    public Task<Operation> DeleteVolumeAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Delete, InProject($"api/v1/volumes/{Escape(name)}"), cancellationToken);

    private Task<Operation> VolumeActionAsync(string name, string action, VolumeAction body, CancellationToken cancellationToken) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Post, InProject($"api/v1/volumes/{Escape(name)}/{action}"))
        {
            Content = JsonContent.Create(body, options: JsonOptions),
        }, ReadJsonAsync<Operation>, cancellationToken);
}
