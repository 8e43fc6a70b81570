using System.Text;

namespace Kumo.Server.Identity.Ldap;

/// <summary>Values placed into LDAP search filters.</summary>
internal static class LdapFilter
{
    /// <summary>
    /// Escapes an assertion value per RFC 4515: <c>* ( ) \</c> and NUL become <c>\XX</c>, and so does
    /// every byte of the UTF-8 encoding outside printable ASCII, so the result is plain ASCII.
    /// </summary>
    public static string Escape(string value)
    {
        var sb = new StringBuilder(value.Length);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            if (b is (byte)'*' or (byte)'(' or (byte)')' or (byte)'\\' or < 0x20 or >= 0x7f)
            {
                sb.Append('\\').Append(b.ToString("x2"));
            }
            else
            {
                sb.Append((char)b);
            }
        }
        return sb.ToString();
    }

    /// <summary>
    /// Login names Kumo accepts from a user: 1 to 64 of <c>a-z 0-9 . _ -</c>. Checked before any
    /// directory call, so filter syntax, wildcards and look-alike letters never reach the directory.
    /// </summary>
    public static bool IsValidUsername(string? username)
    {
        if (username is null || username.Length is < 1 or > 64)
        {
            return false;
        }
        foreach (var c in username)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '_' or '-'))
            {
                return false;
            }
        }
        return true;
    }
}
