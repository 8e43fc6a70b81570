using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    public Task<DebugStub> GetDebugAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<DebugStub>(HttpMethod.Get, InProject($"api/v1/instances/{Escape(name)}/debug"), cancellationToken);

    /// <summary>Starts the VM's gdb stub on a port from the admin's pool (or returns the one it has); answers once it listens.</summary>
    public Task<DebugStub> EnableDebugAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<DebugStub>(HttpMethod.Post, InProject($"api/v1/instances/{Escape(name)}/debug"), cancellationToken);

    /// <summary>Stops the VM's gdb stub and frees its port.</summary>
    public Task<DebugStub> DisableDebugAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<DebugStub>(HttpMethod.Delete, InProject($"api/v1/instances/{Escape(name)}/debug"), cancellationToken);
}
