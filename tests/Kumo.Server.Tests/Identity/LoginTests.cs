using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>Login: one answer for every failure, throttled per account and per source address, strict input.</summary>
public sealed class LoginTests : IAsyncLifetime
{
    private const string AlicePassword = "alice-password";
    private const string BobPassword = "bob-password";
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        await _server.AddUserAsync("alice", AlicePassword);
        await _server.AddUserAsync("bob", BobPassword);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task WrongPassword_AndUnknownAccount_GetTheSame401()
    {
        using var client = _server.ClientFor(null);

        var wrongPassword = await (await LoginAsync(client, "alice", "not-her-password")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        var unknownAccount = await (await LoginAsync(client, "nobody", "not-her-password")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);

        Assert.Equal((wrongPassword.Title, wrongPassword.Detail), (unknownAccount.Title, unknownAccount.Detail));
        Assert.DoesNotContain("alice", wrongPassword.Detail);
    }

    [Fact]
    public async Task UnknownAccount_TakesAboutAsLongAsAWrongPassword()
    {
        // A fast "no such user" would tell accounts apart by timing, whatever the message says. Each side gets its own
        // source address so the throttle does not step in; the bound is loose because the gap it guards is ~100x.
        using var known = _server.ClientFrom(IPAddress.Parse("127.0.0.2"));
        using var unknown = _server.ClientFrom(IPAddress.Parse("127.0.0.3"));
        var knownTimes = new List<TimeSpan>();
        var unknownTimes = new List<TimeSpan>();
        for (var i = 0; i < 3; i++)
        {
            knownTimes.Add(await TimeAsync(() => LoginAsync(known, "alice", $"wrong-{i}")));
            unknownTimes.Add(await TimeAsync(() => LoginAsync(unknown, $"nobody-{i}", $"wrong-{i}")));
        }

        var knownMedian = knownTimes.Order().ElementAt(1);
        Assert.True(unknownTimes.Min() >= knownMedian / 4,
            $"unknown accounts answer in {string.Join(", ", unknownTimes.Select(t => t.TotalMilliseconds))} ms, known ones in {knownMedian.TotalMilliseconds} ms");
    }

    [Fact]
    public async Task FiveFailures_ForAnAccount_ThrottleItFromEverySource_EvenWithTheRightPassword()
    {
        using var attacker = _server.ClientFrom(IPAddress.Parse("127.0.0.2"));
        using var alicesLaptop = _server.ClientFrom(IPAddress.Parse("127.0.0.3"));
        for (var i = 0; i < 5; i++)
            await (await LoginAsync(attacker, "alice", $"guess-{i}")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);

        var problem = await (await LoginAsync(alicesLaptop, "alice", AlicePassword)).AssertProblemAsync(HttpStatusCode.TooManyRequests, ProblemTypes.TooManyAttempts);

        Assert.Contains("try again in", problem.Detail);
        await (await LoginAsync(attacker, "alice", AlicePassword)).AssertProblemAsync(HttpStatusCode.TooManyRequests, ProblemTypes.TooManyAttempts);
        // Other accounts from an address that has not failed are not affected.
        Assert.Equal(HttpStatusCode.OK, (await LoginAsync(alicesLaptop, "bob", BobPassword)).StatusCode);
    }

    [Fact]
    public async Task FiveFailures_FromASource_ThrottleEveryAccountFromIt()
    {
        using var sprayer = _server.ClientFrom(IPAddress.Parse("127.0.0.4"));
        using var elsewhere = _server.ClientFrom(IPAddress.Parse("127.0.0.5"));
        for (var i = 0; i < 5; i++)
            await (await LoginAsync(sprayer, $"ghost-{i}", "guess")).AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);

        await (await LoginAsync(sprayer, "bob", BobPassword)).AssertProblemAsync(HttpStatusCode.TooManyRequests, ProblemTypes.TooManyAttempts);

        Assert.Equal(HttpStatusCode.OK, (await LoginAsync(elsewhere, "bob", BobPassword)).StatusCode);
    }

    [Fact]
    public async Task ParallelGuesses_GetNoMoreThanFiveAnswers()
    {
        // Guesses sent at once must not all pass the throttle before the first failure is counted.
        using var attacker = _server.ClientFrom(IPAddress.Parse("127.0.0.6"));

        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => LoginAsync(attacker, "alice", $"guess-{i}")));

        var statuses = responses.Select(r => (int)r.StatusCode).ToList();
        Assert.True(statuses.Count(s => s == 401) <= 5, "answers: " + string.Join(",", statuses.Order()));
        Assert.All(statuses, s => Assert.True(s is 401 or 429, $"unexpected {s}"));
    }

    [Fact]
    public async Task SuccessfulLogins_DoNotCountTowardsTheThrottle()
    {
        using var client = _server.ClientFrom(IPAddress.Parse("127.0.0.7"));

        for (var i = 0; i < 8; i++)
            Assert.Equal(HttpStatusCode.OK, (await LoginAsync(client, "bob", BobPassword)).StatusCode);
    }

    [Theory]
    [InlineData("", AlicePassword)]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", AlicePassword)] // 64 characters
    [InlineData("Alice", AlicePassword)]
    [InlineData("al ice", AlicePassword)]
    [InlineData("alice\n", AlicePassword)]
    [InlineData("al\0ice", AlicePassword)]
    [InlineData("*)(uid=*", AlicePassword)]
    [InlineData("al;ice", AlicePassword)]
    [InlineData("álice", AlicePassword)]
    [InlineData("аlice", AlicePassword)] // Cyrillic а
    [InlineData("alice", "")]
    public async Task Login_WithBadInput_Returns400Validation(string username, string password)
    {
        using var client = _server.ClientFor(null);

        await (await LoginAsync(client, username, password)).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
    }

    [Fact]
    public async Task Login_WithMissingFields_Returns400Validation()
    {
        using var client = _server.ClientFor(null);

        using var response = await client.PostAsync("/api/v1/auth/login", JsonContent.Create(new { }, options: Problems.Json));

        await response.AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);
    }

    [Fact]
    public async Task BadInput_DoesNotCountTowardsTheThrottle()
    {
        using var client = _server.ClientFrom(IPAddress.Parse("127.0.0.8"));
        for (var i = 0; i < 8; i++)
            await (await LoginAsync(client, "Not Valid", "x")).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal(HttpStatusCode.OK, (await LoginAsync(client, "alice", AlicePassword)).StatusCode);
    }

    private static Task<HttpResponseMessage> LoginAsync(HttpClient client, string username, string password) =>
        client.PostAsync("/api/v1/auth/login", JsonContent.Create(new LoginRequest { Username = username, Password = password }, options: Problems.Json));

    private static async Task<TimeSpan> TimeAsync(Func<Task<HttpResponseMessage>> call)
    {
        var watch = Stopwatch.StartNew();
        using var response = await call();
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        return watch.Elapsed;
    }
}
