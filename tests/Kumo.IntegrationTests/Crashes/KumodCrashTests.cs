using System.Net;
using Kumo.Core;
using Kumo.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Kumo.IntegrationTests.Crashes;

/// <summary>kill -9 of an all-in-one kumod (server and its in-process agent) at many points of a create.</summary>
[Trait("Category", "Slow")]
public sealed class KumodCrashTests(ITestOutputHelper output)
{
    // From "before the request reached the store" to "qemu started, guest not ready yet".
    private static readonly int[] KillAfterMs = [0, 3, 8, 15, 30, 60, 120, 250, 500, 900, 1500, 2500];

    [Fact]
    public async Task KillingKumodDuringCreate_ConvergesWithoutOrphansOrDuplicates()
    {
        await using var env = await KumoEnvironment.StartAsync();
        var committed = new HashSet<string>();
        for (var i = 0; i < KillAfterMs.Length; i++)
        {
            var name = $"crash{i}";
            var post = env.Api.CreateAsync(new { name, image = "tiny", memory = "128M", disk = "64M" });
            await Task.Delay(KillAfterMs[i]);
            env.Server!.Crash();
            try
            {
                var (status, _, _) = await post;
                if (status == HttpStatusCode.Accepted) committed.Add(name);
            }
            catch (HttpRequestException)
            {
                // The answer was lost with kumod; the create may or may not have been committed.
            }
            await env.StartServerAsync();

            var instance = await env.Api.GetAsync(name);
            output.WriteLine($"kill after {KillAfterMs[i]} ms: answered={committed.Contains(name)} stored={instance is not null} state={instance?.State}");
            if (committed.Contains(name)) Assert.NotNull(instance);
            if (instance is not null)
            {
                var running = await ApiClient.EventuallyAsync(() => env.Api.GetAsync(name), x => x?.State == InstanceStates.Running,
                    TimeSpan.FromSeconds(90), $"{name} running after the crash");
                Assert.Equal(name, running!.Name);
            }
            // Convergence is eventual: guests adopted after the restart answer the agent's readiness ping within moments.
            var instances = await ApiClient.EventuallyAsync(() => env.Api.ListAsync(), all => all.All(x => x.State == InstanceStates.Running),
                TimeSpan.FromSeconds(60), "every instance running after the restart");
            Assert.All(instances, x => Assert.Equal(InstanceStates.Running, x.State));
            Assert.Equal(instances.Count, env.QemuPids().Count);
            // No instance directory without an instance, none missing.
            var dirs = Directory.Exists(env.LocalInstancesDir) ? Directory.GetDirectories(env.LocalInstancesDir).Select(Path.GetFileName) : [];
            Assert.Equal(instances.Select(x => x.Id).Order(), dirs.Order());
        }
        Assert.True(committed.Count >= 1, "at least one create must have been answered before the kill");
    }
}
