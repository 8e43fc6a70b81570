using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Kumo.Core.Security;

namespace Kumo.Cli.Configuration;

/// <summary>
/// The CA pinned for each kumod, like Incus keeps its remotes' certificates: one PEM file per server (host and
/// port) in ~/.config/kumo/servercerts/, mode 0600.
/// </summary>
internal static partial class TrustStore
{
    public static string PathFor(CliEnvironment env, Uri server)
    {
        var host = UnsafeCharacters().Replace(server.Host.Trim('[', ']').ToLowerInvariant(), "_");
        var directory = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(env.ConfigPath))!, "servercerts");
        return Path.Combine(directory, $"{host}_{server.Port}.crt");
    }

    /// <summary>The pinned CA of <paramref name="server"/>, or null when none is pinned yet.</summary>
    public static X509Certificate2? Load(CliEnvironment env, Uri server)
    {
        var path = PathFor(env, server);
        if (!File.Exists(path))
            return null;
        try
        {
            return CaTrust.LoadPem(path);
        }
        catch (InvalidDataException e)
        {
            throw new UsageException($"the pinned CA {path} is unreadable ({e.Message}); trust the server again: kumo config trust");
        }
    }

    public static string Save(CliEnvironment env, Uri server, X509Certificate2 ca)
    {
        var path = PathFor(env, server);
        CliConfig.WritePrivate(path, ca.ExportCertificatePem() + "\n");
        return path;
    }

    [GeneratedRegex("[^a-z0-9.-]")]
    private static partial Regex UnsafeCharacters();
}
