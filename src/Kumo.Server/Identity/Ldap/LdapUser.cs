namespace Kumo.Server.Identity.Ldap;

/// <summary>A directory user whose password the directory just accepted.</summary>
/// <param name="Username">The login name as validated (lower case).</param>
/// <param name="Dn">The entry the password was bound against.</param>
/// <param name="DisplayName"><c>displayName</c>, else <c>cn</c>, else the login name.</param>
/// <param name="Email"><c>mail</c>, when the entry has one.</param>
/// <param name="IsAdmin">Member of <see cref="LdapOptions.AdminGroupDn"/>.</param>
public sealed record LdapUser(string Username, string Dn, string DisplayName, string? Email, bool IsAdmin);
