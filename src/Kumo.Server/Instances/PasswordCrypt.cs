using System.Diagnostics;

namespace Kumo.Server.Instances;

/// <summary>
/// SHA-512 crypt(3) ("$6$…") hashes for guest passwords, the form cloud-init's hashed_passwd and /etc/shadow take.
/// openssl computes it (the BCL has no crypt); the password goes in on stdin, never on a command line.
/// </summary>
internal static class PasswordCrypt
{
    public static async Task<string> HashAsync(string password, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("openssl") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "passwd", "-6", "-stdin" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start openssl");
        await p.StandardInput.WriteLineAsync(password.AsMemory(), ct);
        p.StandardInput.Close();
        var hash = (await p.StandardOutput.ReadToEndAsync(ct)).Trim();
        await p.WaitForExitAsync(ct);
        return p.ExitCode == 0 && hash.StartsWith("$6$", StringComparison.Ordinal)
            ? hash
            : throw new InvalidOperationException("openssl passwd -6 failed: " + await p.StandardError.ReadToEndAsync(ct));
    }
}
