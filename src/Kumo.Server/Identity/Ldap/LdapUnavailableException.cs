namespace Kumo.Server.Identity.Ldap;

/// <summary>
/// The directory could not answer: unreachable, too slow, or refusing Kumo's service account.
/// Distinct from a refused login (which is a null user), so callers can answer 503, not 401.
/// </summary>
public sealed class LdapUnavailableException : Exception
{
    public LdapUnavailableException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
