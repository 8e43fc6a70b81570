using System.DirectoryServices.Protocols;
using System.Runtime.InteropServices;

namespace Kumo.Server.Identity.Ldap;

/// <summary>
/// Creates connections whose every wait is bounded. On Linux, System.DirectoryServices.Protocols binds
/// with libldap's synchronous call, which ignores <see cref="LdapConnection.Timeout"/>: against a server
/// that accepts the TCP connection and never answers, <c>Bind</c> would block forever. libldap copies
/// its global options into each new handle, so we set its global API and network timeouts just before
/// the handle is created, under a lock so each connection gets its own values.
/// </summary>
internal static class LdapTimeouts
{
    private const int LdapOptTimeout = 0x5002;
    private const int LdapOptNetworkTimeout = 0x5005;

    private static readonly Lock Gate = new();
    private static readonly Lazy<SetTimevalOption?> SetOption = new(LoadSetOption);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int SetTimevalOption(IntPtr ld, int option, ref Timeval value);

    // struct timeval: two C longs, which are pointer-sized on Linux.
    [StructLayout(LayoutKind.Sequential)]
    private struct Timeval
    {
        public nint Seconds;
        public nint Microseconds;
    }

    public static LdapConnection Create(LdapDirectoryIdentifier identifier, TimeSpan timeout)
    {
        lock (Gate)
        {
            if (SetOption.Value is { } set)
            {
                var value = new Timeval
                {
                    Seconds = (nint)(timeout.Ticks / TimeSpan.TicksPerSecond),
                    Microseconds = (nint)(timeout.Ticks % TimeSpan.TicksPerSecond / TimeSpan.TicksPerMicrosecond),
                };
                set(IntPtr.Zero, LdapOptTimeout, ref value);
                set(IntPtr.Zero, LdapOptNetworkTimeout, ref value);
            }
            return new LdapConnection(identifier) { Timeout = timeout };
        }
    }

    // The same library System.DirectoryServices.Protocols loads, tried in the same order.
    private static SetTimevalOption? LoadSetOption()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        foreach (var name in new[] { "libldap.so.2", "libldap-2.6.so.0", "libldap-2.5.so.0", "libldap-2.4.so.2" })
        {
            if (NativeLibrary.TryLoad(name, out var library) && NativeLibrary.TryGetExport(library, "ldap_set_option", out var export))
            {
                return Marshal.GetDelegateForFunctionPointer<SetTimevalOption>(export);
            }
        }
        return null;
    }
}
