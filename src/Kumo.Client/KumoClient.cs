using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Serialization;
using Kumo.Client.Trust;
using Kumo.Core;

namespace Kumo.Client;

/// <summary>
/// Typed client for the kumod REST API (docs/api.md). Every failure surfaces as a <see cref="KumoApiException"/>.
/// </summary>
public sealed partial class KumoClient : IDisposable
{
    /// <summary>The wire format: System.Text.Json web defaults (camelCase), nulls left out of request bodies.</summary>
    public static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;

    /// <summary>Creates a client with its own <see cref="HttpClient"/>, disposed with this client.</summary>
    public KumoClient(Uri baseAddress)
        : this(new HttpClient { BaseAddress = WithTrailingSlash(baseAddress), Timeout = Timeout.InfiniteTimeSpan }, ownsHttp: true)
    {
    }

    /// <summary>Creates a client that sends <paramref name="token"/> as its bearer token (when not null).</summary>
    public KumoClient(Uri baseAddress, string? token)
        : this(baseAddress)
    {
        Token = token;
    }

    /// <summary>HTTPS to kumod trusting only <paramref name="pinnedCa"/> (see <see cref="PinnedCaHandler"/>).</summary>
    public KumoClient(Uri baseAddress, X509Certificate2 pinnedCa)
        : this(baseAddress, new PinnedCaHandler(pinnedCa))
    {
    }

    /// <summary>Creates a client that owns <paramref name="handler"/> and the <see cref="HttpClient"/> around it.</summary>
    public KumoClient(Uri baseAddress, HttpMessageHandler handler)
        : this(new HttpClient(handler) { BaseAddress = WithTrailingSlash(baseAddress), Timeout = Timeout.InfiniteTimeSpan }, ownsHttp: true)
    {
    }

    /// <summary>Wraps a caller-owned <see cref="HttpClient"/>; its <see cref="HttpClient.BaseAddress"/> must be set.</summary>
    public KumoClient(HttpClient http)
        : this(http, ownsHttp: false)
    {
    }

    private KumoClient(HttpClient http, bool ownsHttp)
    {
        if (http.BaseAddress is null)
            throw new ArgumentException("the HttpClient needs a BaseAddress (the kumod URL)", nameof(http));
        http.BaseAddress = WithTrailingSlash(http.BaseAddress);
        _http = http;
        _ownsHttp = ownsHttp;
    }

    public Uri BaseAddress => _http.BaseAddress!;

    /// <summary>Bearer token sent with every request except login; null or empty sends none.</summary>
    public string? Token { get; set; }

    /// <summary>
    /// The project instance requests act in (<c>?project=</c>); null means kumod's default, the caller's personal project.
    /// </summary>
    public string? Project { get; set; }

    /// <summary>Limit for one ordinary request. Streams (events, backup, restore) are bounded only by the caller's token.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(100);

    /// <summary>How often <see cref="WaitOperationAsync"/> polls once the event stream is gone.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    public void Dispose()
    {
        if (_ownsHttp)
            _http.Dispose();
    }

    // ---- server, nodes, images

    public Task<ServerInfo> GetServerInfoAsync(CancellationToken cancellationToken = default) =>
        SendJsonAsync<ServerInfo>(HttpMethod.Get, "api/v1", cancellationToken);

    public async Task<IReadOnlyList<Node>> ListNodesAsync(CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Node[]>(HttpMethod.Get, "api/v1/nodes", cancellationToken);

    public Task<Node> GetNodeAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Node>(HttpMethod.Get, $"api/v1/nodes/{Escape(name)}", cancellationToken);

    public Task<Node> DrainNodeAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Node>(HttpMethod.Post, $"api/v1/nodes/{Escape(name)}/drain", cancellationToken);

    public Task<Node> UndrainNodeAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Node>(HttpMethod.Post, $"api/v1/nodes/{Escape(name)}/undrain", cancellationToken);

    /// <summary>Removes a node; without <paramref name="force"/> kumod refuses (node-busy) while instances remain.</summary>
    public Task RemoveNodeAsync(string name, bool force = false, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Delete, $"api/v1/nodes/{Escape(name)}{Force(force)}"),
            static (_, _) => Task.FromResult(true), cancellationToken);

    /// <summary>A one-time token for a new node to join with (kumo-agent --join-token); <paramref name="ttl"/> like 30m, 1h, 2d.</summary>
    public Task<NodeToken> CreateNodeTokenAsync(string? ttl = null, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Post, "api/v1/nodes/tokens")
        {
            Content = JsonContent.Create(new NodeTokensPost { Ttl = ttl }, options: JsonOptions),
        }, ReadJsonAsync<NodeToken>, cancellationToken);

    /// <summary>Images visible in the current project; <paramref name="type"/> (vm, container) filters.</summary>
    public async Task<IReadOnlyList<Image>> ListImagesAsync(string? type = null, CancellationToken cancellationToken = default) =>
        await SendJsonAsync<Image[]>(HttpMethod.Get,
            InProject(type is null ? "api/v1/images" : $"api/v1/images?type={Uri.EscapeDataString(type)}"), cancellationToken);

    public Task<Image> GetImageAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Image>(HttpMethod.Get, InProject($"api/v1/images/{Escape(name)}"), cancellationToken);

    // ---- instances

    /// <summary>Lists instances; null filters mean every state and type.</summary>
    public async Task<IReadOnlyList<Instance>> ListInstancesAsync(string? state = null, string? type = null, CancellationToken cancellationToken = default)
    {
        var query = new List<string>();
        if (Project is not null)
            query.Add("project=" + Uri.EscapeDataString(Project));
        if (state is not null)
            query.Add("state=" + Uri.EscapeDataString(state));
        if (type is not null)
            query.Add("type=" + Uri.EscapeDataString(type));
        var path = query.Count == 0 ? "api/v1/instances" : "api/v1/instances?" + string.Join('&', query);
        return await SendJsonAsync<Instance[]>(HttpMethod.Get, path, cancellationToken);
    }

    public Task<Instance> GetInstanceAsync(string name, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Instance>(HttpMethod.Get, InProject($"api/v1/instances/{Escape(name)}"), cancellationToken);

    /// <summary>Reads an instance and the ETag to pass to <see cref="PutInstanceAsync"/>.</summary>
    public Task<InstanceWithETag> GetInstanceWithETagAsync(string name, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Get, InProject($"api/v1/instances/{Escape(name)}")), async (response, ct) =>
        {
            var instance = await ReadJsonAsync<Instance>(response, ct);
            var etag = response.Headers.ETag?.Tag ?? Quote(instance.Version.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return new InstanceWithETag(instance, etag);
        }, cancellationToken);

    /// <summary>Changes labels and description; fails with precondition-failed (412) if the instance changed since <paramref name="ifMatch"/> was read.</summary>
    public Task<Instance> PutInstanceAsync(string name, InstancePut put, string ifMatch, CancellationToken cancellationToken = default) =>
        SendAsync(() =>
        {
            var request = new HttpRequestMessage(HttpMethod.Put, InProject($"api/v1/instances/{Escape(name)}"))
            {
                Content = JsonContent.Create(put, options: JsonOptions),
            };
            request.Headers.TryAddWithoutValidation("If-Match", Quote(ifMatch));
            return request;
        }, ReadJsonAsync<Instance>, cancellationToken);

    /// <summary>Starts creating an instance; follow the returned operation with <see cref="WaitOperationAsync"/>.</summary>
    public Task<Operation> CreateInstanceAsync(InstancesPost post, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Post, InProject("api/v1/instances"))
        {
            Content = JsonContent.Create(post, options: JsonOptions),
        }, ReadJsonAsync<Operation>, cancellationToken);

    public Task<Operation> StartInstanceAsync(string name, CancellationToken cancellationToken = default) =>
        InstanceActionAsync(name, "start", cancellationToken);

    /// <summary>Graceful stop; kumod forces it after a timeout.</summary>
    public Task<Operation> StopInstanceAsync(string name, CancellationToken cancellationToken = default) =>
        InstanceActionAsync(name, "stop", cancellationToken);

    public Task<Operation> RestartInstanceAsync(string name, CancellationToken cancellationToken = default) =>
        InstanceActionAsync(name, "restart", cancellationToken);

    /// <summary>Hard power-off.</summary>
    public Task<Operation> DestroyInstanceAsync(string name, CancellationToken cancellationToken = default) =>
        InstanceActionAsync(name, "destroy", cancellationToken);

    /// <summary>Deletes an instance; without <paramref name="force"/> kumod refuses (invalid-state) while it runs.</summary>
    public Task<Operation> DeleteInstanceAsync(string name, bool force = false, CancellationToken cancellationToken = default) =>
        SendJsonAsync<Operation>(HttpMethod.Delete, InProject($"api/v1/instances/{Escape(name)}{Force(force)}"), cancellationToken);

    private Task<Operation> InstanceActionAsync(string name, string action, CancellationToken cancellationToken) =>
        SendJsonAsync<Operation>(HttpMethod.Post, InProject($"api/v1/instances/{Escape(name)}/{action}"), cancellationToken);

    // ---- admin

    /// <summary>Copies a consistent snapshot of kumod's database into <paramref name="destination"/>.</summary>
    public async Task DownloadBackupAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "api/v1/admin/backup");
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        try
        {
            await response.Content.CopyToAsync(destination, cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
        {
            throw KumoApiException.Failed($"the backup download from {BaseAddress} broke: {e.Message}", e);
        }
    }

    /// <summary>Replaces kumod's database with the SQLite file read from <paramref name="source"/>.</summary>
    public async Task RestoreAsync(Stream source, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/v1/admin/restore") { Content = new StreamContent(source) };
        request.Content.Headers.ContentType = new("application/octet-stream");
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
    }

    // ---- plumbing

    private Task<T> SendJsonAsync<T>(HttpMethod method, string path, CancellationToken cancellationToken) =>
        SendAsync(() => new HttpRequestMessage(method, path), ReadJsonAsync<T>, cancellationToken);

    /// <summary>One ordinary request, bounded by <see cref="RequestTimeout"/>.</summary>
    private async Task<T> SendAsync<T>(Func<HttpRequestMessage> createRequest, Func<HttpResponseMessage, CancellationToken, Task<T>> read,
        CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(RequestTimeout);
        try
        {
            using var request = createRequest();
            using var response = await SendRawAsync(request, HttpCompletionOption.ResponseContentRead, timeout.Token);
            return await read(response, timeout.Token);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw KumoApiException.Failed($"kumod at {BaseAddress} did not answer within {RequestTimeout.TotalSeconds:0}s", e);
        }
    }

    /// <summary>Sends a request and turns transport failures and non-2xx answers into <see cref="KumoApiException"/>.</summary>
    private async Task<HttpResponseMessage> SendRawAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        if (!string.IsNullOrEmpty(Token) && !request.Options.TryGetValue(WithoutToken, out _))
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Token);
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, completion, cancellationToken);
        }
        catch (HttpRequestException e) when (IsConnectFailure(e))
        {
            throw KumoApiException.Unreachable(BaseAddress, e);
        }
        catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ResponseEnded && BaseAddress.Scheme == Uri.UriSchemeHttp)
        {
            throw KumoApiException.Failed(
                $"kumod at {BaseAddress} closed the connection without answering: it serves HTTPS unless started with --insecure-http, so use https://", e);
        }
        catch (HttpRequestException e)
        {
            throw KumoApiException.Failed($"request to kumod at {BaseAddress} failed: {e.Message}", e);
        }
        if (response.IsSuccessStatusCode)
            return response;
        using (response)
            throw new KumoApiException(await ProblemReader.ReadAsync(response, cancellationToken), response.Headers.RetryAfter?.Delta);
    }

    private static async Task<T> ReadJsonAsync<T>(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            var value = await response.Content.ReadFromJsonAsync<T>(JsonOptions, cancellationToken);
            return value ?? throw KumoApiException.Failed($"kumod sent an empty {typeof(T).Name} for {response.RequestMessage?.RequestUri}");
        }
        catch (JsonException e)
        {
            throw KumoApiException.Failed($"kumod sent a {typeof(T).Name} this client cannot read: {e.Message}", e);
        }
    }

    private static bool IsConnectFailure(HttpRequestException e) =>
        e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError
        || e.InnerException is SocketException;

    private static string Escape(string segment) => Uri.EscapeDataString(segment);

    private static string Force(bool force) => force ? "?force=true" : "";

    /// <summary>Adds <c>project=</c> when <see cref="Project"/> is set.</summary>
    private string InProject(string path) =>
        Project is null ? path : $"{path}{(path.Contains('?', StringComparison.Ordinal) ? '&' : '?')}project={Uri.EscapeDataString(Project)}";

    /// <summary>ETags travel quoted; accept a bare version number too.</summary>
    private static string Quote(string tag) =>
        tag.StartsWith('"') || tag.StartsWith("W/", StringComparison.Ordinal) ? tag : $"\"{tag}\"";

    /// <summary>Without a trailing slash a base path like /kumo would be dropped by relative resolution.</summary>
    private static Uri WithTrailingSlash(Uri uri) =>
        uri.AbsoluteUri.EndsWith('/') ? uri : new Uri(uri.AbsoluteUri + "/");
}
