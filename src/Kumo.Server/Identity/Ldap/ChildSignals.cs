using System.Runtime.InteropServices;

namespace Kumo.Server.Identity.Ldap;

/// <summary>
/// Keeps SIGCHLD off a thread while it waits in libldap. libldap treats a wait interrupted by a signal
/// (poll returning EINTR) as a lost connection and reports "server down"; kumod receives SIGCHLD every
/// time one of its many child processes exits. A process-directed signal goes to a thread that does not
/// block it, so blocking it here moves delivery to another thread and changes nothing else.
/// </summary>
internal static partial class ChildSignals
{
    private const int SigBlock = 0;
    private const int SigSetMask = 2;
    private const int SigChld = 17;
    private const int SigSetBytes = 128; // glibc's sigset_t

    /// <summary>Runs <paramref name="action"/> (which must not await) with SIGCHLD blocked on this thread.</summary>
    public static T Blocked<T>(Func<T> action)
    {
        if (!OperatingSystem.IsLinux())
        {
            return action();
        }
        var block = new byte[SigSetBytes];
        var previous = new byte[SigSetBytes];
        if (sigemptyset(block) != 0 || sigaddset(block, SigChld) != 0 || pthread_sigmask(SigBlock, block, previous) != 0)
        {
            return action();
        }
        try
        {
            return action();
        }
        finally
        {
            // Restoring a mask the kernel just gave us cannot fail.
            _ = pthread_sigmask(SigSetMask, previous, null);
        }
    }

    [DllImport("libc")]
    private static extern int sigemptyset(byte[] set);

    [DllImport("libc")]
    private static extern int sigaddset(byte[] set, int signal);

    [DllImport("libc")]
    private static extern int pthread_sigmask(int how, byte[] set, byte[]? previous);
}
