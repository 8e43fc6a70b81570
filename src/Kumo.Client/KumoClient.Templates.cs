using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>The admins' libvirt domain templates (every user may read them).</summary>
    public async Task<IReadOnlyList<DomainTemplate>> ListTemplatesAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<DomainTemplate[]>(HttpMethod.Get, "api/v1/templates", cancellationToken);

    public Task<DomainTemplate> GetTemplateAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<DomainTemplate>(HttpMethod.Get, $"api/v1/templates/{Escape(name)}", cancellationToken);

    /// <summary>Adds a template (admins); kumod refuses one that is not a valid Kumo template (template-invalid).</summary>
    public Task<DomainTemplate> AddTemplateAsync(TemplatesPost post, CancellationToken cancellationToken = default) =>
        SendJsonAsync<DomainTemplate>(HttpMethod.Post, "api/v1/templates", post, cancellationToken);

    public Task DeleteTemplateAsync(string name, CancellationToken cancellationToken = default) =>
        SendNoContentAsync(HttpMethod.Delete, $"api/v1/templates/{Escape(name)}", null, cancellationToken);
}
