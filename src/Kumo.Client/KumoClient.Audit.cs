using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>
    /// Audit entries, newest first. <paramref name="since"/> is an RFC 3339 time or a duration back from kumod's
    /// clock ("1h", "2d"); null filters and limit mean kumod's defaults (everyone, all time, 100 entries).
    /// </summary>
    public async Task<IReadOnlyList<AuditEntry>> ListAuditAsync(string? user = null, string? since = null, int? limit = null,
        CancellationToken cancellationToken = default)
    {
        var query = new List<string>();
        if (user is not null)
            query.Add("user=" + Uri.EscapeDataString(user));
        if (since is not null)
            query.Add("since=" + Uri.EscapeDataString(since));
        if (limit is not null)
            query.Add("limit=" + limit.Value.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var path = query.Count == 0 ? "api/v1/audit" : "api/v1/audit?" + string.Join('&', query);
        return await SendJsonAsync<AuditEntry[]>(HttpMethod.Get, path, cancellationToken);
    }

    /// <summary>Has kumod walk the whole chain; a broken log is an answer (Ok false), not an exception.</summary>
    public Task<AuditVerification> VerifyAuditAsync(CancellationToken cancellationToken = default) =>
        SendJsonAsync<AuditVerification>(HttpMethod.Get, "api/v1/audit/verify", cancellationToken);

    /// <summary>Copies the whole audit log, as JSON lines oldest first, into <paramref name="destination"/>; returns the number of entries.</summary>
    public async Task<long> ExportAuditAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "api/v1/audit/export");
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        try
        {
            await using var source = await response.Content.ReadAsStreamAsync(cancellationToken);
            var buffer = new byte[81920];
            long lines = 0;
            int read;
            while ((read = await source.ReadAsync(buffer, cancellationToken)) > 0)
            {
                lines += buffer.AsSpan(0, read).Count((byte)'\n');
                await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            }
            return lines;
        }
        catch (Exception e) when (e is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
        {
            throw KumoApiException.Failed($"the audit export from {BaseAddress} broke: {e.Message}", e);
        }
    }
}
