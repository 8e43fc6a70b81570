using System.Globalization;
using Kumo.Core;

namespace Kumo.Client;

/// <summary>Image import, export and removal (the catalogue reads are in the main file).</summary>
public sealed partial class KumoClient
{
    /// <summary>
    /// Uploads a disk or archive (qcow2, raw, VMDK, VHD(X), Vagrant box, OVA: kumod detects which from the content)
    /// and returns the import operation; <paramref name="uploaded"/> hears the bytes sent so far.
    /// </summary>
    public async Task<Operation> ImportImageAsync(Stream source, ImageImport import, IProgress<long>? uploaded = null,
        CancellationToken cancellationToken = default)
    {
        var query = new List<string> { "name=" + Uri.EscapeDataString(import.Name) };
        if (import.Type is not null) query.Add("type=" + Uri.EscapeDataString(import.Type));
        if (import.Readiness is not null) query.Add("readiness=" + Uri.EscapeDataString(import.Readiness));
        if (import.Description is not null) query.Add("description=" + Uri.EscapeDataString(import.Description));
        using var request = new HttpRequestMessage(HttpMethod.Post, InProject("api/v1/images/import?" + string.Join('&', query)))
        {
            Content = new ProgressStreamContent(source, uploaded),
        };
        request.Content.Headers.ContentType = new("application/octet-stream");
        if (source.CanSeek) request.Content.Headers.ContentLength = source.Length - source.Position;
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
        return await ReadJsonAsync<Operation>(response, cancellationToken);
    }

    /// <summary>
    /// Downloads an image's disk as qcow2 (default), raw or vmdk into <paramref name="destination"/>;
    /// <paramref name="progress"/> hears (bytes so far, total or null).
    /// </summary>
    public async Task ExportImageAsync(string name, string? format, Stream destination, IProgress<(long Done, long? Total)>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var path = $"api/v1/images/{Escape(name)}/content";
        if (format is not null) path += "?format=" + Uri.EscapeDataString(format);
        using var request = new HttpRequestMessage(HttpMethod.Get, InProject(path));
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        var total = response.Content.Headers.ContentLength;
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            var buffer = new byte[1 << 20];
            long done = 0;
            int n;
            while ((n = await body.ReadAsync(buffer, cancellationToken)) > 0)
            {
                await destination.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
                done += n;
                progress?.Report((done, total));
            }
            if (total is { } expected && done != expected)
                throw KumoApiException.Failed(string.Create(CultureInfo.InvariantCulture,
                    $"the export of image '{name}' ended after {done} of {expected} bytes"));
        }
        catch (Exception e) when (e is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
        {
            throw KumoApiException.Failed($"the export of image '{name}' from {BaseAddress} broke: {e.Message}", e);
        }
    }

    /// <summary>Starts building a base image from a distribution's mirror (admins); follow the returned operation.</summary>
    public Task<Operation> BuildBaseImageAsync(ImagesBuildBasePost post, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Post, "api/v1/images/build-base")
        {
            Content = System.Net.Http.Json.JsonContent.Create(post, options: JsonOptions),
        }, ReadJsonAsync<Operation>, cancellationToken);

    /// <summary>Removes an image of the project; kumod refuses built-ins and images that instances were made from.</summary>
    public Task DeleteImageAsync(string name, CancellationToken cancellationToken = default) => DeleteImageAsync(name, null, cancellationToken);

    /// <summary>
    /// Removes an image of the project, of <paramref name="type"/> when given (a vm and a container image may share a
    /// name); a built container image also leaves its node's engine.
    /// </summary>
    public Task DeleteImageAsync(string name, string? type, CancellationToken cancellationToken = default) =>
        SendAsync(() => new HttpRequestMessage(HttpMethod.Delete,
                InProject($"api/v1/images/{Escape(name)}" + (type is null ? "" : "?type=" + Uri.EscapeDataString(type)))),
            static (_, _) => Task.FromResult(true), cancellationToken);

    /// <summary>Streams a request body and reports how much of it went out.</summary>
    private sealed class ProgressStreamContent(Stream source, IProgress<long>? progress) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context, CancellationToken cancellationToken)
        {
            var buffer = new byte[1 << 20];
            long sent = 0;
            int n;
            while ((n = await source.ReadAsync(buffer, cancellationToken)) > 0)
            {
                await stream.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
                sent += n;
                progress?.Report(sent);
            }
        }

        protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override bool TryComputeLength(out long length)
        {
            length = source.CanSeek ? source.Length - source.Position : -1;
            return source.CanSeek;
        }
    }
}

/// <summary>What <see cref="KumoClient.ImportImageAsync"/> asks for: null fields take kumod's defaults (type vm, readiness none).</summary>
public sealed record ImageImport(string Name, string? Type = null, string? Readiness = null, string? Description = null);
