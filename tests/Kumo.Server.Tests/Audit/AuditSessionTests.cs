using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Audit;
using Kumo.Server.Tests.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Kumo.Server.Tests.Audit;

/// <summary>What the audit middleware records for real requests to a real kumod.</summary>
public sealed class AuditSessionTests : IAsyncLifetime
{
    private static readonly byte[] Big = Encoding.ASCII.GetBytes(new string('x', 3 << 20));
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync(app =>
        {
            // Endpoints kumod does not have (yet), to reach every outcome. They borrow permissions from Policy.Table
            // (a pair missing there is refused): ca.get lets anyone through, server.get any logged-in user.
            app.MapGet("/api/v1/test/forgotten", () => "no policy");
            app.MapGet("/api/v1/test/unauthenticated", () => Results.StatusCode(401)).Requires("ca", "get");
            app.MapGet("/api/v1/test/big", () => Results.Bytes(Big, "application/octet-stream")).Requires("server", "get");
            app.MapGet("/api/v1/test/half-then-throw", async (HttpContext http) =>
            {
                await http.Response.WriteAsync("{\"partial\":");
                throw new InvalidOperationException("boom");
            }).Requires("server", "get");
        });
        await _server.AddNodeAsync("node-a");
        _admin = (await _server.Client.GetFromJsonAsync<User>("/api/v1/auth/whoami", Problems.Json))!;
        _baseline = (await _server.RowsAsync()).Count;
    }

    /// <summary>The bootstrap admin, as whoami tells it.</summary>
    private User _admin = null!;

    /// <summary>Entries written before the test starts (the test server's login, the whoami above).</summary>
    private int _baseline;

    /// <summary>The entries the test itself caused.</summary>
    private async Task<List<AuditRow>> NewRowsAsync() => (await _server.RowsAsync()).Skip(_baseline).ToList();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task ScriptedSession_EveryCallAppearsOnceInOrderWithItsOutcome()
    {
        using var anonymous = _server.ClientFor(null);
        using var forged = _server.ClientFor("kumo-forged-bearer-token");
        var c = _server.Client;
        var expected = new List<(string Method, string Target, string Action, string Outcome, int Status, string? UserId, string? UserName)>();
        async Task Call(HttpMethod method, string path, HttpContent? body, string action, string outcome, HttpStatusCode status)
        {
            using var request = new HttpRequestMessage(method, path) { Content = body };
            using var response = await c.SendAsync(request);
            Assert.True(status == response.StatusCode, $"{method} {path}: expected {(int)status}, got {(int)response.StatusCode}");
            var admin = c == _server.Client;
            expected.Add((method.Method, path, action, outcome, (int)status, admin ? _admin.Id : null, admin ? "admin" : null));
        }

        await Call(HttpMethod.Get, "/api/v1", null, "server.get", "allowed", HttpStatusCode.OK);
        await Call(HttpMethod.Get, "/api/v1/nodes", null, "node.list", "allowed", HttpStatusCode.OK);
        await Call(HttpMethod.Post, "/api/v1/instances", JsonContent.Create(new InstancesPost { Name = "web" }), "instance.create", "allowed", HttpStatusCode.Accepted);
        await Call(HttpMethod.Get, "/api/v1/instances/web", null, "instance.get", "allowed", HttpStatusCode.OK);
        await Call(HttpMethod.Get, "/api/v1/instances/nope", null, "instance.get", "error", HttpStatusCode.NotFound);
        await Call(HttpMethod.Post, "/api/v1/instances", new StringContent("name=web", Encoding.UTF8, "text/plain"),
            "POST (refused by routing)", "error", HttpStatusCode.UnsupportedMediaType);
        await Call(HttpMethod.Get, "/api/v1/nothing-here", null, "GET (no route)", "error", HttpStatusCode.NotFound);
        await Call(HttpMethod.Delete, "/api/v1/instances", null, "DELETE (refused by routing)", "error", HttpStatusCode.MethodNotAllowed);
        await Call(HttpMethod.Put, "/api/v1/instances/web", JsonContent.Create(new InstancePut()), "instance.update", "error", HttpStatusCode.PreconditionRequired);
        await Call(HttpMethod.Get, "/api/v1/test/forgotten", null, "GET /api/v1/test/forgotten", "denied", HttpStatusCode.Forbidden);
        await Call(HttpMethod.Get, "/api/v1/test/unauthenticated", null, "ca.get", "denied", HttpStatusCode.Unauthorized);
        c = anonymous;
        await Call(HttpMethod.Get, "/api/v1/nodes?as=anonymous", null, "node.list", "denied", HttpStatusCode.Unauthorized);
        c = forged;
        await Call(HttpMethod.Get, "/api/v1/nodes?as=forged", null, "node.list", "denied", HttpStatusCode.Unauthorized);
        c = _server.Client;
        await Call(HttpMethod.Get, "/api/v1/instances?state=running", null, "instance.list", "allowed", HttpStatusCode.OK);
        await Call(HttpMethod.Delete, "/api/v1/instances/web?force=true", null, "instance.delete", "allowed", HttpStatusCode.Accepted);
        await Call(HttpMethod.Get, "/api/v1/audit/verify", null, "audit.verify", "allowed", HttpStatusCode.OK);

        var all = await _server.RowsAsync();
        var rows = all.Skip(_baseline).ToList();
        Assert.Equal(expected, rows.Select(r => (r.Method, r.Target, r.Action, r.Outcome, (int)r.Status, r.UserId, r.UserName)).ToList());
        Assert.Equal(Enumerable.Range(_baseline + 1, expected.Count).Select(i => (long)i), rows.Select(r => r.Seq));
        Assert.Equal(Enumerable.Range(1, all.Count).Select(i => (long)i), all.Select(r => r.Seq));
        Assert.All(rows, r => Assert.Equal("127.0.0.1", r.Source));
        Assert.Equal(all.Count, all.Select(r => r.RequestId).Distinct().Count());
    }

    [Fact]
    public async Task EventStream_IsRecordedAsStartedBeforeItsFirstByte()
    {
        var created = await _server.CreateAsync(new InstancesPost { Name = "web" });
        var op = (await created.Content.ReadFromJsonAsync<Operation>(Problems.Json))!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));

        using var response = await _server.Client.GetAsync($"/api/v1/operations/{op.Id}/events", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var first = await reader.ReadLineAsync(cts.Token);

        Assert.StartsWith("data: ", first);
        var last = (await _server.RowsAsync())[^1];
        Assert.Equal(("operation.watch", "stream-started", 200, "admin"), (last.Action, last.Outcome, (int)last.Status, last.UserName));
    }

    [Fact]
    public async Task BodyLargerThanTheHoldLimit_ArrivesWholeAndIsRecordedOnce()
    {
        var body = await _server.Client.GetByteArrayAsync("/api/v1/test/big");

        Assert.Equal(Big, body);
        var row = Assert.Single(await NewRowsAsync());
        Assert.Equal(("/api/v1/test/big", "server.get", "allowed", 200, "admin"), (row.Target, row.Action, row.Outcome, (int)row.Status, row.UserName));
    }

    [Fact]
    public async Task HandlerFailingHalfWay_SendsOnlyTheProblemAndRecordsTheError()
    {
        var response = await _server.Client.GetAsync("/api/v1/test/half-then-throw");

        var problem = await response.AssertProblemAsync(HttpStatusCode.InternalServerError, ProblemTypes.Internal);
        Assert.Contains("request id", problem.Detail);
        var row = Assert.Single(await NewRowsAsync());
        Assert.Equal(("/api/v1/test/half-then-throw", "server.get", "error", 500, "admin"), (row.Target, row.Action, row.Outcome, (int)row.Status, row.UserName));
    }

    [Fact]
    public async Task Export_StreamsEveryEntryAsJsonLinesOldestFirst()
    {
        for (var i = 0; i < 5; i++)
            await _server.Client.GetStringAsync($"/api/v1/nodes?i={i}");

        using var response = await _server.Client.GetAsync("/api/v1/audit/export");
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);

        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        var entries = lines.Select(l => JsonSerializer.Deserialize<AuditEntry>(l, Problems.Json)!).ToList();
        Assert.Equal(Enumerable.Range(1, _baseline + 5).Select(i => (long)i), entries.Select(e => e.Seq));
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"/api/v1/nodes?i={i}"), entries.Skip(_baseline).Select(e => e.Target));
        Assert.All(entries.Skip(_baseline), e => Assert.Equal("admin", e.UserName));
        Assert.Equal(entries[0].Hash, entries[1].PrevHash);
        Assert.Equal(entries[_baseline].Hash, entries[_baseline + 1].PrevHash);
        var export = (await _server.RowsAsync())[^1];
        Assert.Equal(("audit.export", "stream-started"), (export.Action, export.Outcome));
    }

    [Fact]
    public async Task List_FiltersBySinceAndLimitNewestFirst()
    {
        for (var i = 0; i < 5; i++)
            await _server.Client.GetStringAsync($"/api/v1/nodes?i={i}");

        var newest = (await _server.Client.GetFromJsonAsync<AuditEntry[]>("/api/v1/audit?limit=3&since=1h", Problems.Json))!;
        var future = await _server.Client.GetFromJsonAsync<AuditEntry[]>(
            $"/api/v1/audit?since={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddHours(1).ToString("O"))}", Problems.Json);
        var nobody = await _server.Client.GetFromJsonAsync<AuditEntry[]>("/api/v1/audit?user=alice", Problems.Json);

        Assert.Equal([_baseline + 5, _baseline + 4, _baseline + 3], newest.Select(e => e.Seq));
        Assert.Equal("/api/v1/nodes?i=4", newest[0].Target);
        Assert.Empty(future!);
        Assert.Empty(nobody!);
    }

    [Theory]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=ten", "limit")]
    [InlineData("limit=10001", "limit")]
    [InlineData("since=yesterday", "since")]
    [InlineData("since=", "since")]
    public async Task List_WithBadFilter_Returns400NamingIt(string query, string field)
    {
        var problem = await (await _server.Client.GetAsync($"/api/v1/audit?{query}")).AssertProblemAsync(HttpStatusCode.BadRequest, ProblemTypes.Validation);

        Assert.Equal([field], problem.Errors?.Keys ?? []);
    }

    [Fact]
    public async Task SecretsInHeadersAndQuery_NeverReachTheDatabase()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/instances?state=running&token=abc&Password=hunter2-pw&api_key=k3y-material");
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "secret123");
        request.Headers.Add("Cookie", "session=cookie-crumb");
        using (await _server.Client.SendAsync(request)) { }
        using (await _server.Client.PostAsync("/api/v1/instances", JsonContent.Create(new { name = "web", description = "body-secret" }))) { }

        var row = (await NewRowsAsync())[0];
        Assert.Equal("/api/v1/instances?state=running&token=REDACTED&Password=REDACTED&api_key=REDACTED", row.Target);
        var text = string.Join('\n', (await _server.RowsAsync()).Select(r =>
            string.Join('|', r.Time, r.UserId, r.UserName, r.Source, r.Method, r.Action, r.Target, r.Outcome, r.RequestId)));
        Assert.DoesNotContain("abc", text);
        var raw = await RawDatabaseTextAsync();
        foreach (var secret in new[] { "secret123", "Bearer", "hunter2-pw", "k3y-material", "cookie-crumb", "token=abc", _server.AdminToken })
            Assert.DoesNotContain(secret, raw);
        Assert.Contains("body-secret", raw); // the instance row holds it; the audit row must not
        Assert.DoesNotContain("body-secret", text);
    }

    [Fact]
    public async Task TwoHundredConcurrentRequests_AllLandOnceWithAnUnbrokenChain()
    {
        await Task.WhenAll(Enumerable.Range(0, 200).Select(i => _server.Client.GetStringAsync($"/api/v1/nodes?i={i}")));

        var rows = await NewRowsAsync();
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"/api/v1/nodes?i={i}").Order(), rows.Select(r => r.Target).Order());
        var verification = await _server.Client.GetFromJsonAsync<AuditVerification>("/api/v1/audit/verify", Problems.Json);
        Assert.True(verification!.Ok, verification.Reason);
        Assert.Equal(_baseline + 200, verification.Count);
    }

    [Fact]
    public async Task AuditJournalThatCannotBeWritten_WithholdsTheAnswer_UntilItCanAgain()
    {
        // Immutable: even root's writes to the open segment fail, as on a failing disk.
        var segments = Directory.GetFiles(Path.Combine(_server.StateDir, "audit-journal"));
        await ChattrAsync("+i", segments);
        HttpResponseMessage refused;
        try
        {
            refused = await _server.Client.GetAsync("/api/v1/nodes?while=broken");
        }
        finally
        {
            await ChattrAsync("-i", segments);
        }

        var problem = await refused.AssertProblemAsync(HttpStatusCode.InternalServerError, ProblemTypes.Internal);
        Assert.Equal("Audit log unavailable", problem.Title);
        Assert.Equal(HttpStatusCode.OK, (await _server.Client.GetAsync("/api/v1/nodes?after=repair")).StatusCode);
        var rows = await NewRowsAsync();
        Assert.Equal(["/api/v1/nodes?after=repair"], rows.Select(r => r.Target));
        var verification = await _server.Client.GetFromJsonAsync<AuditVerification>("/api/v1/audit/verify", Problems.Json);
        Assert.True(verification!.Ok, verification.Reason);
    }

    [Fact]
    public async Task TableThatCannotBeWritten_StillAnswers_AndTheEntriesWaitInTheJournal()
    {
        await _server.TamperAsync("ALTER TABLE audit RENAME TO audit_away");

        var response = await _server.Client.GetAsync("/api/v1/nodes?table=away");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var journal = string.Concat(Directory.GetFiles(Path.Combine(_server.StateDir, "audit-journal")).Select(File.ReadAllText));
        Assert.Contains("/api/v1/nodes?table=away", journal);
        await _server.TamperAsync("ALTER TABLE audit_away RENAME TO audit");
        Assert.Contains("/api/v1/nodes?table=away", (await NewRowsAsync()).Select(r => r.Target));
    }

    private static async Task ChattrAsync(string flag, string[] paths)
    {
        using var chattr = System.Diagnostics.Process.Start("chattr", [flag, .. paths])!;
        await chattr.WaitForExitAsync();
        Assert.Equal(0, chattr.ExitCode);
    }

    [Fact]
    public async Task Entries_NameTheCallingUser()
    {
        var created = await _server.Client.PostAsJsonAsync("/api/v1/users", new UsersPost { Name = "bob", Password = "bob-password-1234" }, Problems.Json);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var bob = (await created.Content.ReadFromJsonAsync<UserCreated>(Problems.Json))!.User;
        using var asBob = _server.ClientFor(await _server.LoginAsync("bob", "bob-password-1234"));

        Assert.Equal(HttpStatusCode.OK, (await asBob.GetAsync("/api/v1/nodes?as=bob")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await asBob.GetAsync("/api/v1/users?as=bob")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _server.Client.GetAsync("/api/v1/nodes?as=admin")).StatusCode);

        var rows = await NewRowsAsync();
        Assert.Equal(
            [
                ("/api/v1/users", "user.create", "allowed", _admin.Id, "admin"),
                ("/api/v1/auth/login", "auth.login", "allowed", null, null),
                ("/api/v1/nodes?as=bob", "node.list", "allowed", bob.Id, "bob"),
                ("/api/v1/users?as=bob", "user.list", "denied", bob.Id, "bob"),
                ("/api/v1/nodes?as=admin", "node.list", "allowed", _admin.Id, "admin"),
            ],
            rows.Select(r => (r.Target, r.Action, r.Outcome, r.UserId, r.UserName)));
        Assert.NotEqual(_admin.Id, bob.Id);
        var byBob = await _server.Client.GetFromJsonAsync<AuditEntry[]>("/api/v1/audit?user=bob", Problems.Json);
        Assert.Equal(["/api/v1/users?as=bob", "/api/v1/nodes?as=bob"], byBob!.Select(e => e.Target));
    }

    [Fact]
    public async Task InvalidBearerToken_IsRecordedAsDeniedWithoutTheToken()
    {
        const string token = "kumo_0123456789abcdefINVALIDtokenTEXT";
        using var forged = _server.ClientFor(token);

        var response = await forged.GetAsync("/api/v1/nodes");

        await response.AssertProblemAsync(HttpStatusCode.Unauthorized, ProblemTypes.Unauthorized);
        var row = Assert.Single(await NewRowsAsync());
        Assert.Equal(("GET", "/api/v1/nodes", "node.list", "denied", 401, null, null),
            (row.Method, row.Target, row.Action, row.Outcome, (int)row.Status, row.UserId, row.UserName));
        Assert.DoesNotContain(token, await RawDatabaseTextAsync());
        Assert.DoesNotContain("INVALIDtoken", await RawDatabaseTextAsync());
    }

    /// <summary>Everything SQLite has on disk for kumod, main file and write-ahead log, as text.</summary>
    private async Task<string> RawDatabaseTextAsync()
    {
        var text = new StringBuilder();
        foreach (var file in new[] { "kumo.db", "kumo.db-wal" })
        {
            var path = Path.Combine(_server.StateDir, file);
            if (!File.Exists(path)) continue;
            await using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var copy = new MemoryStream();
            await f.CopyToAsync(copy);
            text.Append(Encoding.Latin1.GetString(copy.ToArray()));
        }
        return text.ToString();
    }
}
