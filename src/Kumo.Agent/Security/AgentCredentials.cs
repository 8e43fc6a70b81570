using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.Agent.Security;

/// <summary>
/// What an agent needs to talk to kumod, kept in STATE/pki: the CA it pinned (ca.crt), its own client certificate
/// (node.crt) and key (node.key, 0600), and the hash of the join token that bought them.
/// </summary>
public sealed class AgentCredentials(string stateDir)
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode PrivateDirectory = Private | UnixFileMode.UserExecute;

    public string Directory { get; } = Path.Combine(stateDir, "pki");
    public string CertificatePath => Path.Combine(Directory, "node.crt");
    public string KeyPath => Path.Combine(Directory, "node.key");
    public string CaPath => Path.Combine(Directory, "ca.crt");
    private string TokenPath => Path.Combine(Directory, "join-token.sha256");

    public bool HasCertificate => File.Exists(CertificatePath) && File.Exists(KeyPath) && File.Exists(CaPath);

    /// <summary>True when the saved certificate was bought with this token (so passing it again means nothing new).</summary>
    public bool JoinedWith(string token) => File.Exists(TokenPath) && File.ReadAllText(TokenPath).Trim() == TokenHash(token);

    public X509Certificate2 LoadCa() => CaTrust.LoadPem(CaPath);

    public X509Certificate2 LoadClientCertificate() => X509Certificate2.CreateFromPemFile(CertificatePath, KeyPath);

    /// <summary>Writes the key first and the certificate last, each atomically, so a half-saved identity is never loaded.</summary>
    public void Save(string certificatePem, string keyPem, string caPem, string? token)
    {
        if (OperatingSystem.IsWindows())
            System.IO.Directory.CreateDirectory(Directory);
        else
            System.IO.Directory.CreateDirectory(Directory, PrivateDirectory);
        Write(KeyPath, keyPem);
        Write(CaPath, caPem);
        if (token is not null)
            Write(TokenPath, TokenHash(token) + "\n");
        else
            File.Delete(TokenPath);
        Write(CertificatePath, certificatePem);
    }

    private static string TokenHash(string token) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(token.Trim())));

    private static void Write(string path, string content) => Kumo.Core.Files.DurableFile.Write(path, content, Private);
}
