using System.Diagnostics;
using System.DirectoryServices.Protocols;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Kumo.Server.Identity.Ldap;

/// <summary>
/// Checks a login name and password against an LDAP directory: find the user's entry with the
/// service account (or anonymously), bind as that entry with the password, then read whether the
/// entry is in the admin group. Refusals (malformed name, empty password, unknown user, disabled
/// account, wrong password) return null; a directory that cannot answer throws
/// <see cref="LdapUnavailableException"/>. Passwords are never logged.
/// </summary>
public sealed partial class LdapAuthenticator
{
    private const int InvalidCredentials = 49;
    private const int ServerDown = 81;
    private const int LocalError = 82;
    private const int ClientTimeout = 85;
    private const int ConnectError = 91;
    private const int MaxAttempts = 3;

    private readonly LdapOptions _options;
    private readonly ILogger<LdapAuthenticator> _logger;
    private readonly Uri _url;

    public LdapAuthenticator(LdapOptions options, ILogger<LdapAuthenticator> logger)
    {
        options.Validate();
        _options = options;
        _logger = logger;
        _url = new Uri(options.Url);
    }

    /// <summary>
    /// The user, when the directory accepts <paramref name="password"/> for <paramref name="username"/>;
    /// null when the login is refused. The whole exchange is bounded by <see cref="LdapOptions.Timeout"/>.
    /// </summary>
    /// <exception cref="LdapUnavailableException">The directory is unreachable, too slow or refuses the service account.</exception>
    public async Task<LdapUser?> AuthenticateAsync(string username, string password, CancellationToken ct)
    {
        // Before any directory call: a name outside the allowed alphabet can carry filter syntax.
        if (!LdapFilter.IsValidUsername(username))
        {
            LogMalformedName();
            return null;
        }
        // A simple bind with a DN and no password is an unauthenticated bind, which "succeeds".
        if (string.IsNullOrEmpty(password))
        {
            LogRefused(username, "empty password");
            return null;
        }
        ct.ThrowIfCancellationRequested();

        var deadline = new Deadline(_options.Timeout);
        // The LDAP client calls block; run them off the caller's thread. The grace covers a native
        // call that overruns its own timeout, so a login never waits much past the configured bound.
        // A cancelled caller stops waiting at once; the abandoned work still ends by the deadline.
        var work = Task.Run(() => ChildSignals.Blocked(() => Authenticate(username, password, deadline)), CancellationToken.None);
        try
        {
            return await work.WaitAsync(_options.Timeout + TimeSpan.FromSeconds(1), ct);
        }
        catch (TimeoutException)
        {
            throw Unavailable($"no answer within {_options.Timeout.TotalSeconds:0.###} s", null);
        }
    }

    private LdapUser? Authenticate(string username, string password, Deadline deadline)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return AuthenticateOnce(username, password, deadline);
            }
            catch (LdapException ex) when (ex.ErrorCode == ServerDown && attempt < MaxAttempts && !deadline.Passed)
            {
                // libldap gives up on a connection when a signal interrupts its wait and reports
                // "server down". ChildSignals keeps the commonest one away; this covers the rest.
                // Starting over is harmless; a directory that is really down fails again at once.
                LogRetrying(username, attempt);
            }
            catch (Exception ex) when (ex is DirectoryException or TimeoutException)
            {
                throw Unavailable(Describe(ex), ex);
            }
        }
    }

    private LdapUser? AuthenticateOnce(string username, string password, Deadline deadline)
    {
        using var service = Connect(deadline);
        BindService(service);

        var entry = FindUser(service, username, deadline);
        if (entry is null)
        {
            return null;
        }
        if (IsDisabled(entry))
        {
            LogRefused(username, "account disabled");
            return null;
        }
        if (!BindAsUser(entry.DistinguishedName, password, deadline))
        {
            LogRefused(username, "wrong password");
            return null;
        }

        var isAdmin = IsAdmin(service, entry.DistinguishedName, username, deadline);
        var user = new LdapUser(
            username,
            entry.DistinguishedName,
            FirstValue(entry, "displayName") ?? FirstValue(entry, "cn") ?? username,
            FirstValue(entry, "mail"),
            isAdmin);
        LogAccepted(username, user.Dn, isAdmin);
        return user;
    }

    private LdapConnection Connect(Deadline deadline)
    {
        var identifier = new LdapDirectoryIdentifier(_url.Host, _url.IsDefaultPort ? DefaultPort() : _url.Port);
        var connection = LdapTimeouts.Create(identifier, deadline.Remaining);
        connection.SessionOptions.ProtocolVersion = 3;
        connection.SessionOptions.ReferralChasing = ReferralChasingOptions.None;
        if (_url.Scheme == "ldaps")
        {
            connection.SessionOptions.SecureSocketLayer = true;
        }
        return connection;
    }

    private int DefaultPort() => _url.Scheme == "ldaps" ? 636 : 389;

    private void BindService(LdapConnection service)
    {
        try
        {
            if (_options.BindDn is null)
            {
                service.AuthType = AuthType.Anonymous;
                service.Bind();
            }
            else
            {
                service.AuthType = AuthType.Basic;
                service.Bind(new NetworkCredential(_options.BindDn, _options.BindPassword));
            }
        }
        catch (LdapException ex) when (ex.ErrorCode == InvalidCredentials)
        {
            throw Unavailable($"the directory refused the service account {_options.BindDn}", ex);
        }
    }

    private SearchResultEntry? FindUser(LdapConnection service, string username, Deadline deadline)
    {
        var filter = $"({_options.UserAttribute}={LdapFilter.Escape(username)})";
        var attributes = new List<string> { "cn", "displayName", "mail" };
        if (_options.DisabledAttribute is not null)
        {
            attributes.Add(_options.DisabledAttribute);
        }
        // Two is enough to tell "exactly one" from "ambiguous".
        var request = new SearchRequest(_options.BaseDn, filter, SearchScope.Subtree, [.. attributes]) { SizeLimit = 2 };

        SearchResponse response;
        try
        {
            response = (SearchResponse)service.SendRequest(request, deadline.RequestTimeout);
        }
        catch (DirectoryOperationException ex) when (ex.Response?.ResultCode == ResultCode.SizeLimitExceeded)
        {
            LogAmbiguous(username);
            return null;
        }

        switch (response.Entries.Count)
        {
            case 0:
                LogRefused(username, "no such user");
                return null;
            case 1:
                return response.Entries[0];
            default:
                LogAmbiguous(username);
                return null;
        }
    }

    private bool IsDisabled(SearchResultEntry entry) =>
        _options.DisabledAttribute is { } attribute
        && Values(entry, attribute).Any(v => string.Equals(v, _options.DisabledValue, StringComparison.OrdinalIgnoreCase));

    private bool BindAsUser(string dn, string password, Deadline deadline)
    {
        using var connection = Connect(deadline);
        connection.AuthType = AuthType.Basic;
        try
        {
            connection.Bind(new NetworkCredential(dn, password));
            return true;
        }
        catch (LdapException ex) when (ex.ErrorCode == InvalidCredentials)
        {
            return false;
        }
    }

    private bool IsAdmin(LdapConnection service, string dn, string username, Deadline deadline)
    {
        if (_options.AdminGroupDn is null)
        {
            return false;
        }
        // groupOfNames lists member DNs, posixGroup lists memberUid names; one base search asks both.
        var filter = $"(|(member={LdapFilter.Escape(dn)})(memberUid={LdapFilter.Escape(username)}))";
        var request = new SearchRequest(_options.AdminGroupDn, filter, SearchScope.Base, "1.1");
        try
        {
            var response = (SearchResponse)service.SendRequest(request, deadline.RequestTimeout);
            return response.Entries.Count == 1;
        }
        catch (DirectoryOperationException ex) when (ex.Response?.ResultCode == ResultCode.NoSuchObject)
        {
            LogAdminGroupMissing(_options.AdminGroupDn);
            return false;
        }
    }

    private static string? FirstValue(SearchResultEntry entry, string attribute) => Values(entry, attribute).FirstOrDefault();

    private static IEnumerable<string> Values(SearchResultEntry entry, string attribute)
    {
        foreach (string name in entry.Attributes.AttributeNames)
        {
            if (string.Equals(name, attribute, StringComparison.OrdinalIgnoreCase))
            {
                return entry.Attributes[name].GetValues(typeof(string)).Cast<string>();
            }
        }
        return [];
    }

    private static string Describe(Exception ex) => ex switch
    {
        LdapException { ErrorCode: ServerDown or ConnectError } => "cannot connect",
        LdapException { ErrorCode: ClientTimeout } or TimeoutException => "timed out",
        LdapException { ErrorCode: LocalError } l => $"client error: {l.ServerErrorMessage ?? l.Message}",
        DirectoryOperationException d => $"{d.Response?.ResultCode}: {d.Response?.ErrorMessage ?? d.Message}",
        LdapException l => $"LDAP error {l.ErrorCode}: {l.Message}",
        _ => ex.Message,
    };

    private LdapUnavailableException Unavailable(string reason, Exception? inner)
    {
        LogUnavailable(_options.Url, reason);
        return new LdapUnavailableException($"LDAP directory {_options.Url} is unavailable: {reason}", inner);
    }

    /// <summary>When one login must be over, on the monotonic clock.</summary>
    private readonly struct Deadline(TimeSpan budget)
    {
        private readonly long _start = Stopwatch.GetTimestamp();

        public bool Passed => Stopwatch.GetElapsedTime(_start) >= budget;

        // Zero would mean "do not wait at all" (or "forever") to the client; keep a sliver instead.
        public TimeSpan Remaining
        {
            get
            {
                var left = budget - Stopwatch.GetElapsedTime(_start);
                return left > TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100);
            }
        }

        // Requests take whole seconds (the client drops the fraction, and 0 s means "poll once"): round up.
        public TimeSpan RequestTimeout => TimeSpan.FromSeconds(Math.Ceiling(Remaining.TotalSeconds));
    }

    [LoggerMessage(LogLevel.Information, "LDAP login refused: the login name is malformed")]
    private partial void LogMalformedName();

    [LoggerMessage(LogLevel.Information, "LDAP login for {Username} refused: {Reason}")]
    private partial void LogRefused(string username, string reason);

    [LoggerMessage(LogLevel.Warning, "LDAP login for {Username} refused: more than one directory entry matches")]
    private partial void LogAmbiguous(string username);

    [LoggerMessage(LogLevel.Information, "LDAP login for {Username} as {Dn} accepted (admin: {IsAdmin})")]
    private partial void LogAccepted(string username, string dn, bool isAdmin);

    [LoggerMessage(LogLevel.Warning, "LDAP admin group {GroupDn} does not exist; nobody is admin through it")]
    private partial void LogAdminGroupMissing(string groupDn);

    [LoggerMessage(LogLevel.Debug, "LDAP login for {Username}: connection lost on attempt {Attempt}; retrying")]
    private partial void LogRetrying(string username, int attempt);

    [LoggerMessage(LogLevel.Warning, "LDAP directory {Url} is unavailable: {Reason}")]
    private partial void LogUnavailable(string url, string reason);
}
