using Kumo.Server.Identity;
using Kumo.Server.Tests.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Identity;

/// <summary>
/// The membership cache never keeps an answer read before a change it was invalidated for: a read racing an
/// "add member" must not leave the user locked out of the project until the next unrelated change.
/// </summary>
public sealed class MembershipCacheTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    [Fact]
    public async Task ReadRacingAMembershipChange_NeverLeavesAStaleAnswerCached()
    {
        await _server.AddUserAsync("alice", "alice-password");
        var users = _server.App.Services.GetRequiredService<UserService>();
        var projects = _server.App.Services.GetRequiredService<ProjectService>();
        var admin = new Caller((await users.GetAsync("admin", CancellationToken.None)).Id, "admin", Roles.Admin, "test");
        var alice = (await users.GetAsync("alice", CancellationToken.None)).Id;

        for (var i = 0; i < 150; i++)
        {
            var name = $"p{i}";
            await projects.CreateAsync(new Core.ProjectsPost { Name = name }, admin, CancellationToken.None);
            var readers = Enumerable.Range(0, 4).Select(_ => Task.Run(() => users.ProjectsOfAsync(alice, CancellationToken.None))).ToArray();
            await projects.SetMemberAsync(name, "alice", add: true, admin, CancellationToken.None);
            await Task.WhenAll(readers);

            Assert.Contains(name, await users.ProjectsOfAsync(alice, CancellationToken.None));
        }
    }
}
