using System.Text.Json;
using Kumo.Core;

namespace Kumo.Client;

public sealed partial class KumoClient
{
    /// <summary>
    /// Builds a container image from <paramref name="context"/> (a tar of the build directory) on a node and records
    /// it as <paramref name="name"/> in the project. The build's output goes to <paramref name="output"/> as it
    /// arrives; a failed build (a RUN step that failed, a bad build file) throws with the engine's message.
    /// </summary>
    public async Task<Image> BuildContainerImageAsync(string name, Stream context, string? node, string? dockerfile, Action<string> output,
        IProgress<long>? uploaded = null, IReadOnlyList<string>? buildArgs = null, CancellationToken cancellationToken = default)
    {
        var query = new List<string> { "name=" + Uri.EscapeDataString(name) };
        if (node is not null) query.Add("node=" + Uri.EscapeDataString(node));
        if (dockerfile is not null) query.Add("dockerfile=" + Uri.EscapeDataString(dockerfile));
        foreach (var arg in buildArgs ?? []) query.Add("buildArg=" + Uri.EscapeDataString(arg));
        using var request = new HttpRequestMessage(HttpMethod.Post, InProject("api/v1/images/build?" + string.Join('&', query)))
        {
            Content = new ProgressStreamContent(context, uploaded),
        };
        request.Content.Headers.ContentType = new("application/x-tar");
        // kumod refuses a context over its limit (or a bad name, a name taken) before reading it: with 100-continue the
        // tar is not sent into a refusal, and the refusal is read instead of a broken upload.
        request.Headers.ExpectContinue = true;
        if (context.CanSeek) request.Content.Headers.ContentLength = context.Length - context.Position;
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            using var reader = new StreamReader(body);
            while (await reader.ReadLineAsync(cancellationToken) is { } line)
            {
                if (line.Length == 0) continue;
                var message = JsonSerializer.Deserialize<BuildMessage>(line, JsonOptions);
                if (message?.Stream is { } text) output(text);
                if (message?.Error is { } error) throw KumoApiException.Failed($"the build of '{name}' failed: {error.TrimEnd()}");
                if (message?.Image is { } image) return image;
            }
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException && !cancellationToken.IsCancellationRequested)
        {
            throw KumoApiException.Failed($"the build stream from {BaseAddress} broke: {e.Message}", e);
        }
        throw KumoApiException.Failed($"the build of '{name}' ended without a result (kumod or the node went away)");
    }

    private sealed record BuildMessage(string? Stream, string? Error, Image? Image);
}
