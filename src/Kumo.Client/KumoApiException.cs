using System.Net;
using Kumo.Core;

namespace Kumo.Client;

/// <summary>
/// A call to kumod failed: either kumod answered with an error (<see cref="Problem"/> is set) or it could
/// not be reached at all (<see cref="IsUnreachable"/>).
/// </summary>
public sealed class KumoApiException : Exception
{
    public KumoApiException(Problem problem, TimeSpan? retryAfter = null)
        : base(problem.Detail ?? problem.Title)
    {
        Problem = problem;
        RetryAfter = retryAfter;
    }

    private KumoApiException(string message, Exception? inner, bool unreachable)
        : base(message, inner)
    {
        IsUnreachable = unreachable;
    }

    /// <summary>The server's RFC 9457 answer; null when no HTTP answer arrived.</summary>
    public Problem? Problem { get; }

    /// <summary>True when no connection to kumod could be made (refused, unknown host, TLS failure).</summary>
    public bool IsUnreachable { get; }

    /// <summary>The server's Retry-After, when it sent one (429 too many attempts).</summary>
    public TimeSpan? RetryAfter { get; }

    public HttpStatusCode? StatusCode => Problem is null ? null : (HttpStatusCode)Problem.Status;

    /// <summary>True when the problem carries the given stable type URI (see <see cref="ProblemTypes"/>).</summary>
    public bool Is(string problemType) => Problem?.Type == problemType;

    public static KumoApiException Unreachable(Uri baseAddress, Exception inner) => inner is HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError }
        ? new($"cannot reach kumod at {baseAddress}: the TLS handshake failed ({Innermost(inner).Message}); a kumod started with --insecure-http needs an http:// URL", inner, unreachable: true)
        : new($"cannot reach kumod at {baseAddress}: {inner.Message} (is it running? try ./kumo up)", inner, unreachable: true);

    private static Exception Innermost(Exception e) => e.InnerException is null ? e : Innermost(e.InnerException);

    public static KumoApiException Failed(string message, Exception? inner = null) =>
        new(message, inner, unreachable: false);
}
