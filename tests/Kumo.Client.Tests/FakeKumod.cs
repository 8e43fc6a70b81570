using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Kumo.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kumo.Testing;

/// <summary>
/// A real Kestrel server on 127.0.0.1, port 0, answering with canned JSON the way kumod would.
/// Each test maps only the endpoints it needs.
/// </summary>
public sealed class FakeKumod : IAsyncDisposable
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly WebApplication _app;
    private readonly ConcurrentQueue<string> _requests;

    private FakeKumod(WebApplication app, Uri url, ConcurrentQueue<string> requests)
    {
        _app = app;
        Url = url;
        _requests = requests;
    }

    public Uri Url { get; }

    /// <summary>"METHOD /path?query" of every request so far, in arrival order.</summary>
    public IReadOnlyList<string> Requests => [.. _requests];

    /// <summary>Starts the fake: plain HTTP, or HTTPS with <paramref name="serverCertificate"/> (see <see cref="TestCertificates"/>).</summary>
    public static async Task<FakeKumod> StartAsync(Action<WebApplication> map, X509Certificate2? serverCertificate = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        if (serverCertificate is null)
            builder.WebHost.UseUrls("http://127.0.0.1:0");
        else
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(serverCertificate)));
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var requests = new ConcurrentQueue<string>();
        app.Use((context, next) =>
        {
            requests.Enqueue($"{context.Request.Method} {context.Request.Path}{context.Request.QueryString}");
            return next(context);
        });
        map(app);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new FakeKumod(app, new Uri(address), requests);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    /// <summary>A loopback port nothing listens on (free a moment ago).</summary>
    public static int UnusedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    // ---- canned answers

    public static IResult Ok<T>(T value) => Results.Json(value, Json);

    public static IResult Problem(int status, string type, string title, string? detail = null,
        Dictionary<string, string[]>? errors = null, Dictionary<string, string>? rejections = null) =>
        Results.Json(new Problem
        {
            Type = type,
            Title = title,
            Status = status,
            Detail = detail,
            Errors = errors,
            Rejections = rejections,
        }, Json, "application/problem+json", status);

    /// <summary>Writes server-sent events, one <c>data:</c> line each, flushing after every event.</summary>
    public static async Task WriteEventsAsync(HttpContext context, IEnumerable<OperationEvent> events)
    {
        context.Response.ContentType = "text/event-stream";
        foreach (var ev in events)
        {
            await context.Response.WriteAsync($"data: {JsonSerializer.Serialize(ev, Json)}\n\n");
            await context.Response.Body.FlushAsync();
        }
    }

    public static OperationEvent Event(string id, string status, string? message) =>
        new() { OperationId = id, Status = status, Message = message, At = DateTimeOffset.UtcNow };

    public static Operation Operation(string id, string status, string? message = null, string? error = null, string kind = "create", string target = "web") =>
        new()
        {
            Id = id,
            Kind = kind,
            Target = target,
            Status = status,
            Message = message,
            Error = error,
            CreatedAt = DateTimeOffset.UtcNow,
            UpdatedAt = DateTimeOffset.UtcNow,
        };

    public static Instance Instance(string name, string state = InstanceStates.Running, long memory = 256 * ByteSize.MiB) =>
        new()
        {
            Id = "01JB" + name.ToUpperInvariant(),
            Name = name,
            Project = "default",
            Image = "tiny",
            Cpus = 1,
            MemoryBytes = memory,
            DiskBytes = ByteSize.GiB,
            Node = "node-1",
            State = state,
            DesiredPower = PowerStates.Running,
            Labels = new Dictionary<string, string> { ["tier"] = "web" },
            Version = 3,
            CreatedAt = DateTimeOffset.UtcNow,
            UpdatedAt = DateTimeOffset.UtcNow,
        };

    public static Node Node(string name, string state = NodeStates.Ready) =>
        new()
        {
            Id = "01JN" + name.ToUpperInvariant(),
            Name = name,
            State = state,
            Accelerator = "kvm",
            Cpus = 8,
            MemoryBytes = 16 * ByteSize.GiB,
            UsedCpus = 2,
            UsedMemoryBytes = 512 * ByteSize.MiB,
            FreeCpus = 6,
            FreeMemoryBytes = 16 * ByteSize.GiB - 512 * ByteSize.MiB,
            Instances = 2,
            LastHeartbeat = DateTimeOffset.UtcNow,
            CreatedAt = DateTimeOffset.UtcNow,
        };
}
