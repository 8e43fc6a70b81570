using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>The latest sample of every node and of every instance the caller may see (what `kumo top` shows).</summary>
    public Task<MetricsSummary> GetMetricsSummaryAsync(CancellationToken cancellationToken = default) =>
        SendJsonAsync<MetricsSummary>(HttpMethod.Get, "api/v1/metrics", cancellationToken);

    /// <summary>The recent samples kumod keeps of one instance, oldest first.</summary>
    public Task<InstanceMetrics> GetInstanceMetricsAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<InstanceMetrics>(HttpMethod.Get, InProject($"api/v1/instances/{Escape(name)}/metrics"), cancellationToken);

    /// <summary>GET /metrics as Prometheus would scrape it (text exposition format).</summary>
    public Task<string> GetPrometheusMetricsAsync(CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Get, "metrics"), (response, ct) => response.Content.ReadAsStringAsync(ct), cancellationToken);
}
