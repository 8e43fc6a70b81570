using System.Text;
using Microsoft.AspNetCore.Http;

namespace Kumo.Server.Audit;

/// <summary>
/// The target of a request as the audit log records it: the path and the query string, with the value of every
/// parameter whose name looks like it carries a secret replaced. Bodies and headers are never recorded at all.
/// </summary>
internal static class AuditTarget
{
    public const string Redacted = "REDACTED";

    // ';' is not a separator to ASP.NET, but a client may mean it as one: split on it too, so nothing slips through.
    private static readonly char[] Separators = ['&', ';'];

    private static readonly string[] SecretWords =
        ["pass", "pwd", "token", "secret", "key", "auth", "credential", "signature", "session", "cookie", "otp"];

    public static string Of(HttpRequest request)
    {
        var path = request.PathBase.Add(request.Path).Value ?? "/";
        var query = request.QueryString.Value;
        return string.IsNullOrEmpty(query) ? path : path + Redact(query);
    }

    /// <summary>Turns "?a=1&amp;token=x" into "?a=1&amp;token=REDACTED"; names are compared after percent-decoding.</summary>
    public static string Redact(string query)
    {
        StringBuilder? redacted = null;
        var start = query.StartsWith('?') ? 1 : 0;
        var copied = 0;
        while (start <= query.Length)
        {
            var end = query.IndexOfAny(Separators, start);
            if (end < 0) end = query.Length;
            var eq = query.IndexOf('=', start, end - start);
            var name = query[start..(eq < 0 ? end : eq)];
            if (IsSecret(name))
            {
                redacted ??= new StringBuilder(query.Length);
                redacted.Append(query, copied, start - copied).Append(name).Append('=').Append(Redacted);
                copied = end;
            }
            start = end + 1;
        }
        return redacted is null ? query : redacted.Append(query, copied, query.Length - copied).ToString();
    }

    private static bool IsSecret(string encodedName)
    {
        if (encodedName.Length == 0) return false;
        // Invalid escapes stay as they are: "%zz" is no secret word either way.
        var name = Uri.UnescapeDataString(encodedName.Replace('+', ' '));
        foreach (var word in SecretWords)
        {
            if (name.Contains(word, StringComparison.OrdinalIgnoreCase))
                return true;
        }
        return false;
    }
}
