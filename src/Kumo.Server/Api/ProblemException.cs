using Kumo.Core;

namespace Kumo.Server.Api;

/// <summary>An error with its RFC 9457 shape, thrown by domain code and turned into problem+json at the edge.</summary>
public sealed class ProblemException(int status, string type, string title, string? detail = null) : Exception(detail ?? title)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string Title { get; } = title;
    public string? Detail { get; } = detail;
    public IReadOnlyDictionary<string, string[]>? Errors { get; init; }
    public IReadOnlyDictionary<string, string>? Rejections { get; init; }

    public Problem ToProblem(string? instance) => new()
    {
        Type = Type,
        Title = Title,
        Status = Status,
        Detail = Detail,
        Instance = instance,
        Errors = Errors,
        Rejections = Rejections,
    };

    public static ProblemException Validation(string field, string message) =>
        new(400, ProblemTypes.Validation, "The request is not valid", $"{field}: {message}")
        {
            Errors = new Dictionary<string, string[]> { [field] = [message] },
        };

    public static ProblemException Validation(IReadOnlyDictionary<string, string[]> errors) =>
        new(400, ProblemTypes.Validation, "The request is not valid",
            string.Join("; ", errors.Select(e => $"{e.Key}: {string.Join(", ", e.Value)}")))
        {
            Errors = errors,
        };

    public static ProblemException NotFound(string kind, string name) =>
        new(404, ProblemTypes.NotFound, $"{kind} not found", $"{kind} '{name}' does not exist");

    public static ProblemException Conflict(string detail) =>
        new(409, ProblemTypes.Conflict, "The resource already exists", detail);

    public static ProblemException InvalidState(string detail) =>
        new(409, ProblemTypes.InvalidState, "The resource is not in a state that allows this", detail);
}
