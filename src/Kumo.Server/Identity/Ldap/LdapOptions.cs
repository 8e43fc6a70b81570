using System.Text;
using System.Text.RegularExpressions;

namespace Kumo.Server.Identity.Ldap;

/// <summary>
/// Where the directory is and how Kumo finds users and admins in it.
/// <para>
/// Disabled accounts follow one convention: an entry whose <see cref="DisabledAttribute"/> holds
/// <see cref="DisabledValue"/> (compared ignoring case) cannot log in. The default is
/// <c>employeeType: disabled</c>, an attribute every <c>inetOrgPerson</c> may carry. Set
/// <see cref="DisabledAttribute"/> to null to turn the check off (a directory running the ppolicy
/// overlay refuses the bind of a locked account by itself).
/// </para>
/// </summary>
public sealed partial record LdapOptions
{
    /// <summary><c>ldap://host:port</c> or <c>ldaps://host:port</c>.</summary>
    public required string Url { get; init; }

    /// <summary>Where user entries live, searched with subtree scope, e.g. <c>ou=people,dc=example,dc=org</c>.</summary>
    public required string BaseDn { get; init; }

    /// <summary>The attribute holding the login name.</summary>
    public string UserAttribute { get; init; } = "uid";

    /// <summary>The service account the user search binds as; null searches anonymously.</summary>
    public string? BindDn { get; init; }

    public string? BindPassword { get; init; }

    /// <summary>
    /// Members of this group get the admin role: a <c>groupOfNames</c> listing the user's DN in
    /// <c>member</c>, or a <c>posixGroup</c> listing the login name in <c>memberUid</c>. Null: nobody.
    /// </summary>
    public string? AdminGroupDn { get; init; }

    public string? DisabledAttribute { get; init; } = "employeeType";

    public string DisabledValue { get; init; } = "disabled";

    /// <summary>Bounds every directory operation, and so how long an unreachable directory makes a login wait.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first thing wrong.</summary>
    public void Validate()
    {
        if (!Uri.TryCreate(Url, UriKind.Absolute, out var uri) || uri.Scheme is not ("ldap" or "ldaps")
            || uri.Host.Length == 0 || uri.AbsolutePath is not ("" or "/"))
        {
            throw new ArgumentException($"LDAP Url must look like ldap://host:port or ldaps://host:port, not '{Url}'");
        }
        if (string.IsNullOrWhiteSpace(BaseDn))
        {
            throw new ArgumentException("LDAP BaseDn is required");
        }
        // These names go into search filters unescaped, so they must be plain attribute descriptors.
        if (!AttributeName().IsMatch(UserAttribute))
        {
            throw new ArgumentException($"LDAP UserAttribute '{UserAttribute}' is not an attribute name");
        }
        if (DisabledAttribute is not null && !AttributeName().IsMatch(DisabledAttribute))
        {
            throw new ArgumentException($"LDAP DisabledAttribute '{DisabledAttribute}' is not an attribute name");
        }
        if (string.IsNullOrEmpty(BindDn) != string.IsNullOrEmpty(BindPassword))
        {
            throw new ArgumentException("LDAP BindDn and BindPassword go together: set both or neither");
        }
        if (Timeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("LDAP Timeout must be positive");
        }
    }

    // Records print every property; the service password must not reach a log that way.
    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Url = {Url}, BaseDn = {BaseDn}, UserAttribute = {UserAttribute}, BindDn = {BindDn}, ");
        builder.Append($"BindPassword = {(BindPassword is null ? "" : "***")}, AdminGroupDn = {AdminGroupDn}, ");
        builder.Append($"DisabledAttribute = {DisabledAttribute}, DisabledValue = {DisabledValue}, Timeout = {Timeout}");
        return true;
    }

    [GeneratedRegex("^[A-Za-z][A-Za-z0-9-]*$")]
    private static partial Regex AttributeName();
}
