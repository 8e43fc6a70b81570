using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Api;
using Kumo.Server.Security;
using Kumo.Server.Tests.TestSupport;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Kumo.Server.Tests.Api;

/// <summary>What a caller gets from an endpoint, as far as authorization is concerned.</summary>
public enum Outcome
{
    /// <summary>Past the policy: anything but 401/403. A 400/404/409/412 from the handler still counts (the policy let it through).</summary>
    Allowed,

    /// <summary>401: log in first. On the agent endpoint: gRPC UNAUTHENTICATED (no node certificate).</summary>
    Unauthenticated,

    /// <summary>403: logged in, but this role may not. On the agent endpoint: gRPC PERMISSION_DENIED.</summary>
    Forbidden,

    /// <summary>404 from the handler: someone else's resource, whose existence is not the caller's to learn (not 403).</summary>
    Hidden,

    /// <summary>gRPC UNIMPLEMENTED: no method by that name, so nothing is served to anyone.</summary>
    Unimplemented,
}

/// <summary>
/// Every endpoint × {anonymous, alice, bob, admin} against a table written by hand. The table is a person's statement
/// of who may call what and is never derived from <see cref="Identity.Policy.Table"/>, so a wrong policy line fails here.
/// A new endpoint (in the OpenAPI document or any other route) fails the build until someone writes its row.
/// </summary>
/// <remarks>
/// Path parameters are filled with real resources: alice's instance 'web' in her personal project (asked for with
/// ?project=alice, so bob's attempts name her project), her create operation, a token of hers, node 'node-a', and
/// throwaway targets for calls that destroy things. Bob is the "other user": on alice's things he must get 404.
/// </remarks>
public sealed class AuthorizationMatrixTests(AuthorizationMatrixTests.World world) : IClassFixture<AuthorizationMatrixTests.World>
{
    private const Outcome Ok = Outcome.Allowed;
    private const Outcome Login = Outcome.Unauthenticated;
    private const Outcome Deny = Outcome.Forbidden;
    private const Outcome Hide = Outcome.Hidden;
    private const Outcome NoMethod = Outcome.Unimplemented;

    private sealed record Row(Outcome Anonymous, Outcome Alice, Outcome Bob, Outcome Admin);

    /// <summary>The four callers of <see cref="Row"/> (none of them has a node certificate), and a node agent with one.</summary>
    private sealed record AgentRow(Outcome Anonymous, Outcome Alice, Outcome Bob, Outcome Admin, Outcome Node);

    /// <summary>The REST endpoint, keyed by "METHOD /route-template" (trailing slash and route constraints dropped).</summary>
    private static readonly Dictionary<string, Row> Expected = new()
    {
        // new(anonymous, alice, bob: another user, admin). Login = 401, Deny = 403, Hide = 404 from the handler, Ok = past the policy.
        ["GET /api/v1"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/nodes"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/nodes/{name}"] = new(Login, Ok, Ok, Ok),
        ["DELETE /api/v1/nodes/{name}"] = new(Login, Deny, Deny, Ok),
        ["POST /api/v1/nodes/{name}/drain"] = new(Login, Deny, Deny, Ok),
        ["POST /api/v1/nodes/{name}/undrain"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/images"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/images/{name}"] = new(Login, Ok, Ok, Ok),
        // Imports land in the caller's own project; the built-in 'tiny' has no stored disk (409) and cannot be removed (409).
        ["POST /api/v1/images/import"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/images/{name}/content"] = new(Login, Ok, Ok, Ok),
        ["DELETE /api/v1/images/{name}"] = new(Login, Ok, Ok, Ok),
        // Builds land in the caller's own project like imports; without a name the handler refuses it (400).
        ["POST /api/v1/images/build"] = new(Login, Ok, Ok, Ok),
        // Base images are shared by all projects and cost minutes to build: admins only (an unknown distro is a 400 after).
        ["POST /api/v1/images/build-base"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/instances"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/instances/{name}"] = new(Login, Ok, Hide, Ok),
        ["PUT /api/v1/instances/{name}"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/instances/{name}"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/start"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/stop"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/restart"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/destroy"] = new(Login, Ok, Hide, Ok),
        // Networks live in a project: bob naming alice's project gets 404, as for instances.
        ["GET /api/v1/networks"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/networks"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/networks/{name}"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/networks/{name}"] = new(Login, Ok, Hide, Ok),
        // Domain templates: every user reads them (to choose one); only admins add and remove (bodies and names fail after the policy).
        ["GET /api/v1/templates"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/templates/{name}"] = new(Login, Ok, Ok, Ok),
        ["POST /api/v1/templates"] = new(Login, Deny, Deny, Ok),
        ["DELETE /api/v1/templates/{name}"] = new(Login, Deny, Deny, Ok),
        // Clusters and their reservations live in a project too; bob naming alice's project gets 404.
        ["GET /api/v1/clusters"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/clusters"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/clusters/{name}"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/clusters/{name}"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/clusters/{name}/scale"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/reservations"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/reservations/{name}"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/reservations/{name}"] = new(Login, Ok, Hide, Ok),
        // Port forwards of alice's project and VM: hers and the admin's; bob does not learn they exist.
        ["GET /api/v1/port-forwards"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/instances/{name}/port-forwards"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/port-forwards"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/instances/{name}/port-forwards/{publicPort}"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/instances/{name}/metrics"] = new(Login, Ok, Hide, Ok),
        // Admins only, even for the owner: it decides which node a guest runs on (alice's stopped 'web' answers 409 to the admin).
        ["POST /api/v1/instances/{name}/migrate"] = new(Login, Deny, Deny, Ok),
        // Everyone logged in; what they get is filtered to their projects' instances (admins: all).
        ["GET /api/v1/metrics"] = new(Login, Ok, Ok, Ok),
        // Snapshots of alice's VM: hers and the admin's; bob does not learn it exists.
        ["GET /api/v1/instances/{name}/snapshots"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/snapshots"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/snapshots/{snapshot}/restore"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/instances/{name}/snapshots/{snapshot}"] = new(Login, Ok, Hide, Ok),
        // Volumes in alice's project: members and admins; bob does not learn the project's volumes.
        ["GET /api/v1/volumes"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/volumes"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/volumes/{name}"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/volumes/{name}"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/volumes/{name}/attach"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/volumes/{name}/detach"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/volumes/{name}/resize"] = new(Login, Ok, Hide, Ok),
        // Owner and admins; alice's 'web' is stopped (409) on a node with no agent (503): past the policy either way.
        ["GET /api/v1/instances/{name}/console"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/instances/{name}/console/log"] = new(Login, Ok, Hide, Ok),
        // Container logs/exec/attach: owner and admins; alice's 'web' is a VM (409 from the handler), past the policy.
        ["GET /api/v1/instances/{name}/logs"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/instances/{name}/exec"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/instances/{name}/attach"] = new(Login, Ok, Hide, Ok),
        // Owner and admins: no stub (200), 'web' is stopped (409), turning off what is off (200).
        ["GET /api/v1/instances/{name}/debug"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/instances/{name}/debug"] = new(Login, Ok, Hide, Ok),
        ["DELETE /api/v1/instances/{name}/debug"] = new(Login, Ok, Hide, Ok),
        ["POST /api/v1/auth/login"] = new(Ok, Ok, Ok, Ok),
        ["POST /api/v1/auth/logout"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/auth/whoami"] = new(Login, Ok, Ok, Ok),
        ["POST /api/v1/auth/password"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/tokens"] = new(Login, Ok, Ok, Ok),
        ["POST /api/v1/tokens"] = new(Login, Ok, Ok, Ok),
        ["DELETE /api/v1/tokens/{id}"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/users"] = new(Login, Deny, Deny, Ok),
        ["POST /api/v1/users"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/users/{name}"] = new(Login, Deny, Deny, Ok),
        ["DELETE /api/v1/users/{name}"] = new(Login, Deny, Deny, Ok),
        ["POST /api/v1/users/{name}/disable"] = new(Login, Deny, Deny, Ok),
        ["POST /api/v1/users/{name}/enable"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/projects"] = new(Login, Ok, Ok, Ok),
        ["POST /api/v1/projects"] = new(Login, Deny, Deny, Ok),
        ["POST /api/v1/projects/{name}/members"] = new(Login, Deny, Deny, Ok),
        ["DELETE /api/v1/projects/{name}/members/{user}"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/quotas/{scope}/{name}"] = new(Login, Ok, Hide, Ok),
        ["PUT /api/v1/quotas/{scope}/{name}"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/operations/{id}"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/operations/{id}/events"] = new(Login, Ok, Hide, Ok),
        ["GET /api/v1/admin/backup"] = new(Login, Deny, Deny, Ok),
        ["POST /api/v1/admin/restore"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/usage"] = new(Login, Ok, Ok, Ok),
        ["GET /api/v1/audit"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/audit/verify"] = new(Login, Deny, Deny, Ok),
        ["GET /api/v1/audit/export"] = new(Login, Deny, Deny, Ok),
        // Public: a client fetches the CA before it trusts anything.
        ["GET /api/v1/ca"] = new(Ok, Ok, Ok, Ok),
        ["POST /api/v1/nodes/tokens"] = new(Login, Deny, Deny, Ok),
        // Every user's container routes with their node ports: operators only.
        ["GET /api/v1/proxy/routes"] = new(Login, Deny, Deny, Ok),

        // Not in the OpenAPI document.
        ["GET /openapi/{documentName}.json"] = new(Login, Ok, Ok, Ok),
        // Prometheus scrape: an admin, or a metrics token (see MetricsTokenReaches; a user's sees nodes and their own
        // projects' instances only). A user's session or API token is refused, so scrapers hold scrape-only credentials.
        ["GET /metrics"] = new(Login, Deny, Deny, Ok),
        // The agent protocol sent to the REST endpoint: people are not agents, whatever their role.
        ["POST /kumo.agent.v1.AgentControl/GetCa"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/Join"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/Register"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/Heartbeat"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/WatchDesired"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/ReportStatus"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/ImageFetch"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/ReportMetrics"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/ConsoleWatch"] = new(Login, Deny, Deny, Deny),
        ["POST /kumo.agent.v1.AgentControl/ConsoleStream"] = new(Login, Deny, Deny, Deny),
        ["ANY /kumo.agent.v1.AgentControl/{unimplementedMethod}"] = new(Login, Deny, Deny, Deny),
        ["ANY /{unimplementedService}/{unimplementedMethod}"] = new(Login, Deny, Deny, Deny),
    };

    /// <summary>
    /// The agent endpoint (TLS, optional client certificate). Tokens mean nothing here: the credential is the node's
    /// client certificate, which every call but GetCa and Join needs. The people's columns call over TLS without one
    /// (whatever token they send); Node calls with a certificate kumod issued, and no token.
    /// </summary>
    private static readonly Dictionary<string, AgentRow> ExpectedOnAgentEndpoint = new()
    {
        // new(anonymous, alice, bob, admin, node). Login = UNAUTHENTICATED, Deny = PERMISSION_DENIED, Ok = past both.
        // Before a node has a certificate: the CA, and a join spending a token (checked by the handler).
        ["POST /kumo.agent.v1.AgentControl/GetCa"] = new(Ok, Ok, Ok, Ok, Ok),
        ["POST /kumo.agent.v1.AgentControl/Join"] = new(Ok, Ok, Ok, Ok, Ok),
        ["POST /kumo.agent.v1.AgentControl/Register"] = new(Login, Login, Login, Login, Ok),
        ["POST /kumo.agent.v1.AgentControl/Heartbeat"] = new(Login, Login, Login, Login, Ok),
        ["POST /kumo.agent.v1.AgentControl/WatchDesired"] = new(Login, Login, Login, Login, Ok),
        ["POST /kumo.agent.v1.AgentControl/ReportStatus"] = new(Login, Login, Login, Login, Ok),
        // A node gets only images its instances use; an unknown node id is NOT_FOUND from the handler.
        ["POST /kumo.agent.v1.AgentControl/ImageFetch"] = new(Login, Login, Login, Login, Ok),
        ["POST /kumo.agent.v1.AgentControl/ReportMetrics"] = new(Login, Login, Login, Login, Ok),
        // An unknown node id is NOT_FOUND from the handler.
        ["POST /kumo.agent.v1.AgentControl/ConsoleWatch"] = new(Login, Login, Login, Login, Ok),
        ["POST /kumo.agent.v1.AgentControl/ConsoleStream"] = new(Login, Login, Login, Login, Ok),
        // No method behind them to refuse or serve: UNIMPLEMENTED for everyone, with a node certificate or without.
        ["ANY /kumo.agent.v1.AgentControl/{unimplementedMethod}"] = new(NoMethod, NoMethod, NoMethod, NoMethod, NoMethod),
        ["ANY /{unimplementedService}/{unimplementedMethod}"] = new(NoMethod, NoMethod, NoMethod, NoMethod, NoMethod),
    };

    /// <summary>
    /// Alice's metrics token (kumo token create --metrics) on the REST endpoint: the endpoints it gets past the policy
    /// on. Every other row of <see cref="Expected"/> must refuse it with 403, whatever alice herself may do there.
    /// </summary>
    private static readonly HashSet<string> MetricsTokenReaches =
    [
        "GET /metrics",
        // Public to everyone, so to a scraper too.
        "POST /api/v1/auth/login",
        "GET /api/v1/ca",
    ];

    /// <summary>
    /// The console as a real WebSocket handshake (the REST rows above send plain GETs): who gets past the policy and the
    /// ownership check. Alice's 'web' is stopped, so her handshake (and the admin's) ends in 409 from the handler.
    /// </summary>
    private static readonly Row ConsoleWebSocket = new(Login, Ok, Hide, Ok);

    /// <summary>
    /// The reverse proxy's port: what it forwards is a user's published app, public by design, so no caller is refused
    /// whatever token they send. With no container running, everyone gets the 404 of the unrouted fallback.
    /// </summary>
    private static readonly Row ProxyPort = new(Hide, Hide, Hide, Hide);

    public static TheoryData<string> Endpoints => new(Expected.Keys);
    public static TheoryData<string> AgentEndpoints => new(ExpectedOnAgentEndpoint.Keys);

    [Fact]
    public async Task EveryOpenApiOperation_HasAHandWrittenRow()
    {
        var missing = (await world.OpenApiOperationsAsync()).Except(Expected.Keys).Order().ToList();

        Assert.True(missing.Count == 0, "write the expected outcome of each new endpoint into Expected: " + string.Join(", ", missing));
    }

    [Fact]
    public void EveryRouteEndpoint_HasAHandWrittenRow()
    {
        // Catches surfaces the OpenAPI document does not list (gRPC, /metrics, WebSockets).
        var missing = world.RouteEndpoints().Except(Expected.Keys).Order().ToList();

        Assert.True(missing.Count == 0, "write the expected outcome of each new endpoint into Expected: " + string.Join(", ", missing));
    }

    [Fact]
    public async Task EveryHandWrittenRow_NamesAnEndpointThatExists()
    {
        var exists = (await world.OpenApiOperationsAsync()).Concat(world.RouteEndpoints()).ToHashSet();

        var stale = Expected.Keys.Concat(ExpectedOnAgentEndpoint.Keys).Where(k => !exists.Contains(k)).Distinct().Order().ToList();

        Assert.True(stale.Count == 0, "these rows name endpoints that no longer exist: " + string.Join(", ", stale));
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task RestEndpoint_AnswersEachCallerAsTheTableSays(string endpoint)
    {
        var row = Expected[endpoint];
        var failures = new List<string>();
        foreach (var (who, expected) in new[] { (Who.Anonymous, row.Anonymous), (Who.Alice, row.Alice), (Who.Bob, row.Bob), (Who.Admin, row.Admin) })
        {
            var (actual, answer) = await world.CallAsync(endpoint, who, agentEndpoint: false);
            if (!Matches(expected, actual)) failures.Add($"{who}: expected {expected}, got {answer}");
        }

        Assert.True(failures.Count == 0, $"{endpoint}:\n  " + string.Join("\n  ", failures));
    }

    [Theory]
    [MemberData(nameof(AgentEndpoints))]
    public async Task AgentEndpoint_AnswersEachCallerAsTheTableSays(string endpoint)
    {
        var row = ExpectedOnAgentEndpoint[endpoint];
        var failures = new List<string>();
        foreach (var (who, expected) in new[]
        {
            (Who.Anonymous, row.Anonymous), (Who.Alice, row.Alice), (Who.Bob, row.Bob), (Who.Admin, row.Admin), (Who.Node, row.Node),
        })
        {
            var (actual, answer) = await world.CallAsync(endpoint, who, agentEndpoint: true);
            if (!Matches(expected, actual)) failures.Add($"{who}: expected {expected}, got {answer}");
        }

        Assert.True(failures.Count == 0, $"{endpoint} on the agent endpoint:\n  " + string.Join("\n  ", failures));
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task RestEndpoint_RefusesAMetricsToken_UnlessTheScrapeListSaysOtherwise(string endpoint)
    {
        var expected = MetricsTokenReaches.Contains(endpoint) ? Ok : Deny;

        var (actual, answer) = await world.CallAsync(endpoint, Who.Scraper, agentEndpoint: false);

        Assert.True(Matches(expected, actual), $"{endpoint} with alice's metrics token: expected {expected}, got {answer}");
    }

    [Fact]
    public void MetricsTokenReaches_NamesOnlyRowsOfTheTable() => Assert.Subset(Expected.Keys.ToHashSet(), MetricsTokenReaches);

    [Fact]
    public async Task ConsoleWebSocket_AnswersEachCallerAsTheTableSays()
    {
        var failures = new List<string>();
        foreach (var (who, expected) in new[]
        {
            (Who.Anonymous, ConsoleWebSocket.Anonymous), (Who.Alice, ConsoleWebSocket.Alice), (Who.Bob, ConsoleWebSocket.Bob), (Who.Admin, ConsoleWebSocket.Admin),
        })
        {
            var status = await world.WebSocketStatusAsync("/api/v1/instances/web/console?project=alice", who);
            Outcome actual = status switch
            {
                401 => Outcome.Unauthenticated,
                403 => Outcome.Forbidden,
                404 => Outcome.Hidden,
                _ => Outcome.Allowed,
            };
            if (!Matches(expected, actual)) failures.Add($"{who}: expected {expected}, got {status}");
        }

        Assert.True(failures.Count == 0, "console WebSocket:\n  " + string.Join("\n  ", failures));
    }

    [Fact]
    public async Task ProxyPort_AnswersEachCallerAsTheTableSays()
    {
        var failures = new List<string>();
        foreach (var (who, expected) in new[] { (Who.Anonymous, ProxyPort.Anonymous), (Who.Alice, ProxyPort.Alice), (Who.Bob, ProxyPort.Bob), (Who.Admin, ProxyPort.Admin) })
        {
            foreach (var (path, host) in new[] { ("/u/alice/web/", (string?)null), ("/", "web.alice.localhost"), ("/api/v1/proxy/routes", null) })
            {
                var status = await world.ProxyStatusAsync(path, host, who);
                Outcome actual = status switch
                {
                    401 => Outcome.Unauthenticated,
                    403 => Outcome.Forbidden,
                    404 => Outcome.Hidden,
                    _ => Outcome.Allowed,
                };
                if (actual != expected) failures.Add($"{who} {host}{path}: expected {expected}, got {status}");
            }
        }

        Assert.True(failures.Count == 0, "proxy port:\n  " + string.Join("\n  ", failures));
    }

    [Fact]
    public async Task RestCalls_OnTheAgentEndpoint_Return401EvenWithTheAdminToken()
    {
        // A token sent to the agent port is ignored: the caller is an agent, and agents are not people. Nor is a node
        // certificate a login.
        var failures = new List<string>();
        foreach (var endpoint in Expected.Keys.Where(k => k.Contains("/api/v1", StringComparison.Ordinal) || k.Contains("/openapi/", StringComparison.Ordinal)))
        {
            var expected = Expected[endpoint].Anonymous == Ok ? Ok : Login;
            foreach (var who in new[] { Who.Admin, Who.Node })
            {
                var (actual, answer) = await world.CallAsync(endpoint, who, agentEndpoint: true);
                if (!Matches(expected, actual)) failures.Add($"{endpoint} as {who}: expected {expected}, got {answer}");
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>Allowed accepts a 404 from the handler; Hidden insists on it.</summary>
    private static bool Matches(Outcome expected, Outcome? actual) =>
        actual == expected || (expected == Outcome.Allowed && actual == Outcome.Hidden);

    public enum Who
    {
        Anonymous,
        Alice,
        Bob,
        Admin,

        /// <summary>A node agent: no token, the client certificate of node <see cref="World.NodeName"/>. Agent endpoint only.</summary>
        Node,

        /// <summary>Alice's metrics token (kind metrics): a Prometheus scraper's credential.</summary>
        Scraper,
    }

    /// <summary>One kumod with alice, bob, their resources and throwaway targets, shared by every row.</summary>
    public sealed class World : IAsyncLifetime
    {
        private static readonly HashSet<string> HttpMethods = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];
        private readonly Dictionary<Who, string> _tokens = [];
        private readonly Dictionary<Who, string> _passwords = [];
        /// <summary>The node whose certificate <see cref="Who.Node"/> presents; Register names it.</summary>
        public const string NodeName = "matrix-agent";

        private TestServer _server = null!;
        private X509Certificate2 _nodeCertificate = null!;
        private string _operationId = "";

        public async Task InitializeAsync()
        {
            _server = await TestServer.StartAsync();
            _passwords[Who.Alice] = "alice-password";
            _passwords[Who.Bob] = "bob-password";
            _passwords[Who.Admin] = _server.AdminPassword;
            _tokens[Who.Alice] = await _server.AddUserAsync("alice", _passwords[Who.Alice]);
            _tokens[Who.Bob] = await _server.AddUserAsync("bob", _passwords[Who.Bob]);
            _tokens[Who.Admin] = _server.AdminToken;
            using (var aliceClient = _server.ClientFor(_tokens[Who.Alice]))
            using (var scraper = await PostAsync(aliceClient, "/api/v1/tokens", new TokensPost { Name = "prometheus", Metrics = true }))
            {
                Assert.Equal(HttpStatusCode.Created, scraper.StatusCode);
                _tokens[Who.Scraper] = (await scraper.Content.ReadFromJsonAsync<ApiToken>(Problems.Json))!.Secret!;
            }
            // Targets for calls that change or destroy things, so no row depends on another row having run.
            await _server.AddUserAsync("dave", "dave-password");
            await _server.AddUserAsync("erin", "erin-password");
            await PostAsync(_server.Client, "/api/v1/projects", new ProjectsPost { Name = "lab" });
            await _server.AddNodeAsync("node-a");
            await _server.AddNodeAsync("node-spare");
            _nodeCertificate = await _server.App.Services.GetRequiredService<NodeCertificates>().IssueLocalAsync(NodeName, CancellationToken.None);

            using var alice = _server.ClientFor(_tokens[Who.Alice]);
            using var created = await PostAsync(alice, "/api/v1/instances", new InstancesPost { Name = "web", Stopped = true });
            Assert.Equal(HttpStatusCode.Accepted, created.StatusCode);
            _operationId = (await created.Content.ReadFromJsonAsync<Operation>(Problems.Json))!.Id;
            using var network = await alice.PostAsync("/api/v1/networks", Json(new NetworksPost { Name = "lan", Subnet = "10.42.0.0/24" }));
            Assert.Equal(HttpStatusCode.Created, network.StatusCode);
        }

        public async Task DisposeAsync()
        {
            _nodeCertificate?.Dispose();
            await _server.DisposeAsync();
        }

        public async Task<HashSet<string>> OpenApiOperationsAsync()
        {
            using var doc = JsonDocument.Parse(await _server.Client.GetStringAsync("/openapi/v1.json"));
            var result = new HashSet<string>();
            foreach (var path in doc.RootElement.GetProperty("paths").EnumerateObject())
            {
                foreach (var op in path.Value.EnumerateObject())
                {
                    var method = op.Name.ToUpperInvariant();
                    if (HttpMethods.Contains(method)) result.Add($"{method} {Normalize(path.Name)}");
                }
            }
            return result;
        }

        public HashSet<string> RouteEndpoints()
        {
            var result = new HashSet<string>();
            foreach (var e in _server.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
            {
                var methods = e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? [];
                foreach (var method in methods.Count == 0 ? ["ANY"] : methods)
                    result.Add($"{method} {Normalize(e.RoutePattern.RawText ?? "")}");
            }
            return result;
        }

        /// <summary>Leading slash, no trailing slash, no route constraints: "/api/v1/nodes/" and "/api/v1/nodes" are one route.</summary>
        private static string Normalize(string template)
        {
            var t = Regex.Replace(template, @"\{([^}:]+):[^}]*\}", "{$1}");
            t = "/" + t.Trim('/');
            return t;
        }

        /// <summary>Makes the call as <paramref name="who"/> and classifies the answer.</summary>
        public async Task<(Outcome? Outcome, string Answer)> CallAsync(string endpoint, Who who, bool agentEndpoint)
        {
            Assert.True(agentEndpoint || who != Who.Node, "a node certificate is only offered on the agent endpoint");
            using var client = agentEndpoint ? AgentPortClient(who) : _server.ClientFor(who == Who.Anonymous ? null : _tokens[who]);
            using var request = await RequestAsync(endpoint, who, client);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            // Headers only: the event stream of a running operation never ends by itself.
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var status = (int)response.StatusCode;
            var body = status >= 400 ? await response.Content.ReadAsStringAsync(cts.Token) : "";
            var answer = $"{status} {body}".Trim();
            // A refused gRPC call is an HTTP 200 whose status is in the headers (a trailers-only response).
            if (status == 200 && response.Headers.TryGetValues("grpc-status", out var grpcStatus))
            {
                var code = grpcStatus.First();
                var message = response.Headers.TryGetValues("grpc-message", out var m) ? Uri.UnescapeDataString(m.First()) : "";
                answer = $"200 grpc-status {code} {message}".Trim();
                return (code switch
                {
                    "16" => Outcome.Unauthenticated,
                    "7" => Outcome.Forbidden,
                    "12" => Outcome.Unimplemented,
                    _ => Outcome.Allowed,
                }, answer);
            }
            Outcome? outcome = status switch
            {
                401 => Outcome.Unauthenticated,
                403 => Outcome.Forbidden,
                // The router's own 404 means the table names a route that does not exist: never an expected outcome.
                404 when body.Contains("no API route matches", StringComparison.Ordinal) => null,
                404 => Outcome.Hidden,
                _ => Outcome.Allowed,
            };
            return (outcome, answer);
        }

        /// <summary>The HTTP status of a WebSocket handshake to <paramref name="path"/> as <paramref name="who"/> (101 when upgraded).</summary>
        public async Task<int> WebSocketStatusAsync(string path, Who who)
        {
            using var invoker = new HttpMessageInvoker(TestServer.Trusting(_server.Ca));
            using var ws = new System.Net.WebSockets.ClientWebSocket();
            ws.Options.CollectHttpResponseDetails = true;
            if (who != Who.Anonymous) ws.Options.SetRequestHeader("Authorization", "Bearer " + _tokens[who]);
            var uri = new UriBuilder(new Uri(_server.ApiAddress, path)) { Scheme = "wss" }.Uri;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try
            {
                await ws.ConnectAsync(uri, invoker, cts.Token);
            }
            catch (System.Net.WebSockets.WebSocketException)
            {
            }
            return (int)ws.HttpStatusCode;
        }

        /// <summary>The HTTP status of a GET to the proxy port as <paramref name="who"/> (their token sent along).</summary>
        public async Task<int> ProxyStatusAsync(string path, string? host, Who who)
        {
            using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_server.ProxyAddress, path));
            if (host is not null) request.Headers.Host = host;
            if (who != Who.Anonymous) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _tokens[who]);
            using var response = await client.SendAsync(request);
            return (int)response.StatusCode;
        }

        private HttpClient AgentPortClient(Who who)
        {
            var c = new HttpClient(TestServer.Trusting(_server.Ca, who == Who.Node ? _nodeCertificate : null))
            {
                BaseAddress = _server.AgentAddress,
                DefaultRequestVersion = HttpVersion.Version20,
                DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Timeout = TimeSpan.FromSeconds(30),
            };
            if (who is not Who.Anonymous and not Who.Node) c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _tokens[who]);
            return c;
        }

        private async Task<HttpRequestMessage> RequestAsync(string endpoint, Who who, HttpClient client)
        {
            var space = endpoint.IndexOf(' ', StringComparison.Ordinal);
            var method = endpoint[..space];
            var template = endpoint[(space + 1)..];
            var request = new HttpRequestMessage(new HttpMethod(method == "ANY" ? "POST" : method), await PathAsync(method, template));
            request.Version = client.DefaultRequestVersion;
            request.VersionPolicy = client.DefaultVersionPolicy;
            request.Content = Body(endpoint, who);
            if (endpoint == "PUT /api/v1/instances/{name}") request.Headers.IfMatch.ParseAdd("\"999\"");
            // A logout ends the token it is sent with: send one minted for this call.
            if (endpoint == "POST /api/v1/auth/logout" && _tokens.ContainsKey(who) && who != Who.Scraper)
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", (await MintTokenAsync(who)).Secret);
            return request;
        }

        private async Task<string> PathAsync(string method, string template)
        {
            var path = template;
            if (template.StartsWith("/api/v1/nodes/", StringComparison.Ordinal)) path = path.Replace("{name}", method == "DELETE" ? "node-spare" : "node-a");
            if (template.StartsWith("/api/v1/images/", StringComparison.Ordinal)) path = path.Replace("{name}", "tiny");
            // DELETE names a network that does not exist (404 for everyone past the policy), so no row destroys another's target.
            if (template.StartsWith("/api/v1/networks", StringComparison.Ordinal))
                path = path.Replace("{name}", method == "DELETE" ? "no-such-net" : "lan") + "?project=alice";
            if (template.StartsWith("/api/v1/instances", StringComparison.Ordinal))
                path = path.Replace("{name}", "web").Replace("{snapshot}", "no-such-snapshot").Replace("{publicPort}", "2222") + "?project=alice";
            if (template == "/api/v1/port-forwards") path += "?project=alice";
            // A cluster that does not exist: 404 past the policy, so no row creates or destroys anything.
            if (template.StartsWith("/api/v1/clusters", StringComparison.Ordinal) || template.StartsWith("/api/v1/reservations", StringComparison.Ordinal))
                path = path.Replace("{name}", "no-such-cluster") + "?project=alice";
            if (template.StartsWith("/api/v1/templates/", StringComparison.Ordinal)) path = path.Replace("{name}", "no-such-template");
            if (template.StartsWith("/api/v1/volumes", StringComparison.Ordinal)) path = path.Replace("{name}", "no-such-volume") + "?project=alice";
            if (template.StartsWith("/api/v1/users/", StringComparison.Ordinal)) path = path.Replace("{name}", method == "DELETE" ? "erin" : "dave");
            if (template.StartsWith("/api/v1/projects/", StringComparison.Ordinal)) path = path.Replace("{name}", "lab").Replace("{user}", "dave");
            if (template.StartsWith("/api/v1/quotas/", StringComparison.Ordinal)) path = path.Replace("{scope}", "user").Replace("{name}", "alice");
            if (template.StartsWith("/api/v1/operations/", StringComparison.Ordinal)) path = path.Replace("{id}", _operationId);
            // Revoking consumes the token: each call gets a fresh one of alice's.
            if (template == "/api/v1/tokens/{id}") path = path.Replace("{id}", (await MintTokenAsync(Who.Alice)).Id);
            path = path.Replace("{documentName}", "v1")
                .Replace("{unimplementedService}", "kumo.agent.v1.NoSuchService")
                .Replace("{unimplementedMethod}", "NoSuchMethod");
            Assert.DoesNotContain("{", path);
            return path;
        }

        private HttpContent? Body(string endpoint, Who who) => endpoint switch
        {
            // Bodies that pass the policy and then fail validation, so nothing is created, changed or throttled.
            "POST /api/v1/auth/login" or "POST /api/v1/users" or "POST /api/v1/projects" or "POST /api/v1/instances" or "POST /api/v1/networks"
                or "POST /api/v1/templates"
                or "POST /api/v1/instances/{name}/port-forwards" or "POST /api/v1/clusters" or "POST /api/v1/clusters/{name}/scale" => Json(new { }),
            // The right current password (a wrong one is a 403 of the handler's own) and a new one that is too short.
            "POST /api/v1/auth/password" => Json(new PasswordChange { Current = _passwords.GetValueOrDefault(who, "x"), New = "short" }),
            "POST /api/v1/tokens" => Json(new TokensPost { Name = "matrix" }),
            "POST /api/v1/images/build-base" => Json(new ImagesBuildBasePost { Distro = "no-such-distro" }),
            "POST /api/v1/projects/{name}/members" => Json(new MemberPost { User = "dave" }),
            "PUT /api/v1/quotas/{scope}/{name}" => Json(new { }),
            "PUT /api/v1/instances/{name}" => Json(new InstancePut { Description = "matrix" }),
            // An empty volume request: refused by validation (create) or for the missing volume (404), so nothing changes.
            "POST /api/v1/volumes" or "POST /api/v1/volumes/{name}/attach" or "POST /api/v1/volumes/{name}/detach"
                or "POST /api/v1/volumes/{name}/resize" => Json(new { }),
            // An invalid snapshot name: refused by validation, so nothing is made.
            "POST /api/v1/instances/{name}/snapshots" => Json(new SnapshotsPost { Name = "Not Valid!" }),
            "POST /api/v1/admin/restore" => Bytes("not a database"u8.ToArray(), "application/octet-stream"),
            "POST /api/v1/nodes/tokens" => Json(new { ttl = "not a duration" }),
            "POST /kumo.agent.v1.AgentControl/GetCa" => Grpc(new CaRequest()),
            // An invalid node name: refused by the handler (INVALID_ARGUMENT) before the token is looked at.
            "POST /kumo.agent.v1.AgentControl/Join" => Grpc(new JoinRequest { Token = "not-a-token", NodeName = "Not A Name!" }),
            "POST /kumo.agent.v1.AgentControl/Register" => Grpc(new RegisterRequest { NodeName = NodeName, Cpus = 1, MemoryBytes = ByteSize.GiB }),
            "POST /kumo.agent.v1.AgentControl/Heartbeat" => Grpc(new HeartbeatRequest { NodeId = "no-such-node" }),
            "POST /kumo.agent.v1.AgentControl/WatchDesired" => Grpc(new WatchRequest { NodeId = "no-such-node" }),
            "POST /kumo.agent.v1.AgentControl/ReportStatus" => Grpc(new StatusReport { NodeId = "no-such-node" }),
            "POST /kumo.agent.v1.AgentControl/ImageFetch" => Grpc(new ImageFetchRequest { NodeId = "no-such-node", ImageId = "none" }),
            "POST /kumo.agent.v1.AgentControl/ReportMetrics" => Grpc(new MetricsReport { NodeId = "no-such-node" }),
            "POST /kumo.agent.v1.AgentControl/ConsoleWatch" => Grpc(new ConsoleWatchRequest { NodeId = "no-such-node" }),
            "POST /kumo.agent.v1.AgentControl/ConsoleStream" => Grpc(new ConsoleFrame { NodeId = "no-such-node", SessionId = "none" }),
            // Not an image: refused by the importer (422) after the policy let it through.
            "POST /api/v1/images/import" => Bytes("not an image"u8.ToArray(), "application/octet-stream"),
            // The catch-all gRPC routes only match requests that look like gRPC.
            _ when endpoint.StartsWith("ANY ", StringComparison.Ordinal) => Grpc(new HeartbeatRequest()),
            _ => null,
        };

        private async Task<ApiToken> MintTokenAsync(Who who)
        {
            using var c = _server.ClientFor(_tokens[who]);
            using var r = await PostAsync(c, "/api/v1/tokens", new TokensPost { Name = "matrix-throwaway" });
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
            return (await r.Content.ReadFromJsonAsync<ApiToken>(Problems.Json))!;
        }

        private static Task<HttpResponseMessage> PostAsync<T>(HttpClient c, string path, T body) => c.PostAsync(path, Json(body));

        private static JsonContent Json<T>(T body) => JsonContent.Create(body, options: Problems.Json);

        private static ByteArrayContent Bytes(byte[] bytes, string contentType)
        {
            var content = new ByteArrayContent(bytes);
            content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
            return content;
        }

        /// <summary>One length-prefixed gRPC message (no compression).</summary>
        private static ByteArrayContent Grpc(IMessage message)
        {
            var payload = message.ToByteArray();
            var frame = new byte[5 + payload.Length];
            BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)payload.Length);
            payload.CopyTo(frame, 5);
            return Bytes(frame, "application/grpc");
        }
    }
}
