namespace Kumo.Server.Security;

public sealed record TlsOptions
{
    /// <summary>Serve the REST API as plain HTTP (development only). The agent endpoint always uses TLS.</summary>
    public bool InsecureHttp { get; init; }

    /// <summary>A server certificate (PEM, optionally followed by intermediates) to use instead of a generated one.</summary>
    public string? CertificateFile { get; init; }

    public string? KeyFile { get; init; }

    /// <summary>The CA that issued <see cref="CertificateFile"/>: published at /api/v1/ca for clients to pin.</summary>
    public string? CaFile { get; init; }

    /// <summary>Extra host names or IP addresses for the generated server certificate.</summary>
    public IReadOnlyList<string> ExtraNames { get; init; } = [];
}
