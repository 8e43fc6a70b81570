using System.Text.Json;
using Kumo.Core;

namespace Kumo.Client;

/// <summary>Turns any non-2xx answer into a <see cref="Problem"/>, whether or not kumod sent problem+json.</summary>
internal static class ProblemReader
{
    private const int MaxPlainDetail = 300;

    public static async Task<Problem> ReadAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        string body;
        try
        {
            body = await response.Content.ReadAsStringAsync(cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            body = "";
        }
        return Parse(body, response);
    }

    public static Problem Parse(string body, HttpResponseMessage response)
    {
        var status = (int)response.StatusCode;
        var title = string.IsNullOrEmpty(response.ReasonPhrase) ? $"HTTP {status}" : response.ReasonPhrase;
        if (body.TrimStart().StartsWith('{'))
        {
            try
            {
                var wire = JsonSerializer.Deserialize<WireProblem>(body, KumoClient.JsonOptions);
                if (wire is not null && (wire.Type is not null || wire.Title is not null || wire.Detail is not null))
                {
                    return new Problem
                    {
                        Type = wire.Type ?? "about:blank",
                        Title = wire.Title ?? title,
                        Status = wire.Status ?? status,
                        Detail = wire.Detail,
                        Instance = wire.Instance,
                        Errors = wire.Errors,
                        Rejections = wire.Rejections,
                    };
                }
            }
            catch (JsonException)
            {
                // Not a problem document after all: fall through to the plain description.
            }
        }
        var plain = body.Trim();
        var isText = response.Content.Headers.ContentType?.MediaType?.StartsWith("text/plain", StringComparison.OrdinalIgnoreCase) == true;
        return new Problem
        {
            Type = "about:blank",
            Title = title,
            Status = status,
            Detail = isText && plain.Length is > 0 and <= MaxPlainDetail ? plain : null,
        };
    }

    /// <summary>Lenient mirror of <see cref="Problem"/>: a server may leave any member out.</summary>
    private sealed record WireProblem
    {
        public string? Type { get; init; }
        public string? Title { get; init; }
        public int? Status { get; init; }
        public string? Detail { get; init; }
        public string? Instance { get; init; }
        public Dictionary<string, string[]>? Errors { get; init; }
        public Dictionary<string, string>? Rejections { get; init; }
    }
}
