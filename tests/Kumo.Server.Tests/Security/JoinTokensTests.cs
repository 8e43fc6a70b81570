using Kumo.Server.Security;
using Kumo.Server.Storage;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Security;

public sealed class JoinTokensTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private readonly ManualTimeProvider _time = new();
    private Database _db = null!;
    private JoinTokens _tokens = null!;

    public Task InitializeAsync()
    {
        _db = new Database(_dir.File("kumo.db"));
        _tokens = new JoinTokens(_db, _time);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _db.DisposeAsync();
        _dir.Dispose();
    }

    private Task<string?> SpendAsync(string token, string node) => _db.WriteAsync(ctx => _tokens.Spend(ctx, token, node), CancellationToken.None);

    [Fact]
    public async Task Token_IsSpentOnceOnly()
    {
        var (token, _) = await _tokens.CreateAsync(TimeSpan.FromHours(1), CancellationToken.None);

        Assert.Null(await SpendAsync(token, "n1"));
        Assert.Contains("already used (by node n1)", await SpendAsync(token, "n2"));
    }

    [Fact]
    public async Task Token_ExpiresAfterItsTtl()
    {
        var (token, expires) = await _tokens.CreateAsync(TimeSpan.FromMinutes(30), CancellationToken.None);
        _time.Advance(TimeSpan.FromMinutes(30));

        Assert.Equal(_time.GetUtcNow(), expires);
        Assert.Contains("expired", await SpendAsync(token, "n1"));
    }

    [Fact]
    public async Task Token_JustBeforeItsExpiry_StillWorks()
    {
        var (token, _) = await _tokens.CreateAsync(TimeSpan.FromMinutes(30), CancellationToken.None);
        _time.Advance(TimeSpan.FromMinutes(29));

        Assert.Null(await SpendAsync(token, "n1"));
    }

    [Fact]
    public async Task UnknownToken_IsRefused()
    {
        await _tokens.CreateAsync(TimeSpan.FromHours(1), CancellationToken.None);

        Assert.Contains("not known", await SpendAsync("guess", "n1"));
    }

    [Fact]
    public async Task Tokens_AreRandom_AndStoredOnlyAsHashes()
    {
        var (a, _) = await _tokens.CreateAsync(TimeSpan.FromHours(1), CancellationToken.None);
        var (b, _) = await _tokens.CreateAsync(TimeSpan.FromHours(1), CancellationToken.None);

        var stored = await _db.ReadAsync(c => Dapper.SqlMapper.Query<string>(c, "SELECT hash FROM join_tokens").ToList(), CancellationToken.None);
        Assert.NotEqual(a, b);
        Assert.True(a.Length >= 43, a);
        Assert.Equal(new[] { JoinTokens.Hash(a), JoinTokens.Hash(b) }.Order(), stored.Order());
        Assert.DoesNotContain(a, stored);
    }
}
