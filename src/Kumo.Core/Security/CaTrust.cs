using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kumo.Core.Security;

/// <summary>
/// Certificate checks against one pinned CA and nothing else: the system trust store plays no part, so a
/// certificate from any public CA is as foreign to Kumo as a self-signed one.
/// </summary>
public static class CaTrust
{
    public const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    public const string ClientAuth = "1.3.6.1.5.5.7.3.2";

    /// <summary>
    /// True when <paramref name="certificate"/> is valid now, allowed for <paramref name="usage"/> and chains to
    /// <paramref name="ca"/> as its root. <paramref name="presented"/> supplies intermediates the peer sent.
    /// </summary>
    public static bool ChainsTo(X509Certificate2 certificate, X509Certificate2 ca, string usage, X509Chain? presented = null)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(usage));
        if (presented is not null)
        {
            foreach (var element in presented.ChainElements)
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            chain.ChainPolicy.ExtraStore.AddRange(presented.ChainPolicy.ExtraStore);
        }
        if (!chain.Build(certificate))
            return false;
        return chain.ChainElements[^1].Certificate.RawData.AsSpan().SequenceEqual(ca.RawData);
    }

    /// <summary>
    /// A TLS client's verdict on the server: the name it dialled must be in the certificate's subject alternative
    /// names (TLS computes that part), and the certificate must chain to <paramref name="ca"/>. Returns null when
    /// trusted, else why not.
    /// </summary>
    public static string? ServerRejection(X509Certificate2 ca, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
            return "the server sent no certificate";
        var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        try
        {
            if (!ChainsTo(leaf, ca, ServerAuth, chain))
                return "its certificate is not issued by the pinned CA";
            if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
                return $"its certificate does not name the address dialled (it is for: {string.Join(", ", Names(leaf))})";
            return null;
        }
        finally
        {
            if (!ReferenceEquals(leaf, certificate))
                leaf.Dispose();
        }
    }

    /// <summary>The DNS names and IP addresses a certificate is valid for.</summary>
    public static IEnumerable<string> Names(X509Certificate2 certificate)
    {
        foreach (var extension in certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>())
        {
            foreach (var dns in extension.EnumerateDnsNames())
                yield return dns;
            foreach (var ip in extension.EnumerateIPAddresses())
                yield return ip.ToString();
        }
    }

    /// <summary>Loads the first certificate of a PEM file, or throws with the path in the message.</summary>
    public static X509Certificate2 LoadPem(string path)
    {
        try
        {
            return X509Certificate2.CreateFromPem(File.ReadAllText(path));
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"{path} holds no PEM certificate: {e.Message}", e);
        }
    }
}
