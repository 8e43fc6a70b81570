using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Clusters;

/// <summary>kumod with one roomy node, plus the cluster API calls the cluster tests share.</summary>
public abstract class ClusterTestBase : ServerWithNode
{
    protected Task<HttpResponseMessage> PostAsync(ClustersPost body) => Server.Client.PostAsJsonAsync("/api/v1/clusters", body, Problems.Json);

    /// <summary>Creates a cluster: 202 while members boot, 200 with the finished operation for a reservation.</summary>
    protected async Task<Operation> CreateAsync(ClustersPost body)
    {
        using var response = await PostAsync(body);
        Assert.Equal(body.Start > DateTimeOffset.UtcNow ? HttpStatusCode.OK : HttpStatusCode.Accepted, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
    }

    protected async Task<Cluster> GetAsync(string name) =>
        (await Server.Client.GetFromJsonAsync<Cluster>($"/api/v1/clusters/{name}", Problems.Json))!;

    /// <summary>Polls the cluster until <paramref name="done"/> holds (a minute at most) and returns it.</summary>
    protected async Task<Cluster> PollAsync(string name, Func<Cluster, bool> done)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        var cluster = await GetAsync(name);
        while (!done(cluster) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            cluster = await GetAsync(name);
        }
        Assert.True(done(cluster), $"cluster {name} is {cluster.State} ({cluster.Message})");
        return cluster;
    }
}
