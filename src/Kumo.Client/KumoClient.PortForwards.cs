using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>Every port forward of <see cref="Project"/>.</summary>
    public async Task<IReadOnlyList<PortForward>> ListPortForwardsAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<PortForward[]>(HttpMethod.Get, InProject("api/v1/port-forwards"), cancellationToken);

    /// <summary>The port forwards of one instance.</summary>
    public async Task<IReadOnlyList<PortForward>> ListPortForwardsAsync(string instance, CancellationToken cancellationToken = default) =>
        await SendJsonAsync<PortForward[]>(HttpMethod.Get, InProject($"api/v1/instances/{Escape(instance)}/port-forwards"), cancellationToken);

    /// <summary>Forwards a node port to the instance's port on its tenant network; no public port: kumod picks a free one.</summary>
    public Task<PortForward> AddPortForwardAsync(string instance, PortForwardsPost post, CancellationToken cancellationToken = default) =>
        SendJsonAsync<PortForward>(HttpMethod.Post, InProject($"api/v1/instances/{Escape(instance)}/port-forwards"), post, cancellationToken);

    public Task RemovePortForwardAsync(string instance, int publicPort, string protocol = PortProtocols.Tcp, CancellationToken cancellationToken = default) =>
        SendNoContentAsync(HttpMethod.Delete,
            InProject($"api/v1/instances/{Escape(instance)}/port-forwards/{publicPort}?protocol={Escape(protocol)}"), null, cancellationToken);
}
