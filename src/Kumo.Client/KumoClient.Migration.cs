using System.Net.Http.Json;
using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>Starts a live migration of a running VM to <paramref name="node"/> (admins); follow the returned operation.</summary>
    public Task<Operation> MigrateInstanceAsync(string name, string node, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Post, InProject($"api/v1/instances/{Escape(name)}/migrate"))
        {
            Content = JsonContent.Create(new InstanceMigratePost { Node = node }, options: JsonOptions),
        }, ReadJsonAsync<Operation>, cancellationToken);
}
