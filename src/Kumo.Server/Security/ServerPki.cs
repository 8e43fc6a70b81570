using System.Net;
using System.Security.Cryptography.X509Certificates;
using Kumo.Core.Security;

namespace Kumo.Server.Security;

/// <summary>
/// kumod's certificates, in STATE/pki: its CA (ca.crt, ca.key) and its TLS server certificate (server.crt,
/// server.key), made on first start. The server certificate is made again when the names it must carry change or it
/// nears its end. With --tls-cert/--tls-key/--tls-ca kumod serves that certificate and publishes that CA instead;
/// node certificates are still issued by kumod's own CA, which is the only one it accepts from agents.
/// </summary>
public sealed class ServerPki : IDisposable
{
    private static readonly TimeSpan RenewBefore = TimeSpan.FromDays(30);

    private ServerPki(string directory, CertificateAuthority authority, X509Certificate2 server, X509Certificate2Collection chain,
        X509Certificate2 ca, bool supplied, IReadOnlyList<string> changes)
    {
        Directory = directory;
        Authority = authority;
        ServerCertificate = server;
        ServerChain = chain;
        Ca = ca;
        Supplied = supplied;
        Changes = changes;
    }

    public string Directory { get; }

    /// <summary>kumod's own CA: signs node certificates (and the server certificate unless one was supplied).</summary>
    public CertificateAuthority Authority { get; }

    /// <summary>The TLS server certificate, with its key.</summary>
    public X509Certificate2 ServerCertificate { get; }

    /// <summary>Intermediates sent after the server certificate (supplied certificates only).</summary>
    public X509Certificate2Collection ServerChain { get; }

    /// <summary>The CA clients pin: served at GET /api/v1/ca.</summary>
    public X509Certificate2 Ca { get; }

    public string CaFingerprint => CertificateFingerprint.Of(Ca);

    public bool Supplied { get; }

    /// <summary>What this start created or replaced, for the log.</summary>
    public IReadOnlyList<string> Changes { get; }

    public string CaPath => Path.Combine(Directory, "ca.crt");

    public static ServerPki LoadOrCreate(string stateDir, TlsOptions tls, IEnumerable<IPAddress> listenAddresses, TimeProvider time)
    {
        var directory = Path.Combine(stateDir, "pki");
        System.IO.Directory.CreateDirectory(directory);
        var changes = new List<string>();
        var caCrt = Path.Combine(directory, "ca.crt");
        var caKey = Path.Combine(directory, "ca.key");
        CertificateAuthority authority;
        if (File.Exists(caCrt) && File.Exists(caKey))
        {
            authority = CertificateAuthority.Load(caCrt, caKey);
        }
        else
        {
            authority = CertificateAuthority.Create($"Kumo CA {Environment.MachineName.ToLowerInvariant()}", time);
            authority.Save(caCrt, caKey);
            changes.Add($"created a CA in {caCrt}");
        }

        if (tls.CertificateFile is not null || tls.KeyFile is not null || tls.CaFile is not null)
            return FromSuppliedFiles(directory, authority, tls, changes);

        var (dnsNames, addresses) = RequiredNames(tls.ExtraNames, listenAddresses);
        var serverCrt = Path.Combine(directory, "server.crt");
        var serverKey = Path.Combine(directory, "server.key");
        X509Certificate2? server = null;
        string? replaced = null;
        if (File.Exists(serverCrt) && File.Exists(serverKey))
        {
            server = X509Certificate2.CreateFromPemFile(serverCrt, serverKey);
            replaced = ReasonToReplace(server, authority.Certificate, dnsNames, addresses, time);
            if (replaced is not null)
            {
                server.Dispose();
                server = null;
            }
        }
        if (server is null)
        {
            server = authority.IssueServer(dnsNames, addresses, time);
            PemFiles.Write(serverKey, server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(), PemFiles.Private);
            PemFiles.Write(serverCrt, server.ExportCertificatePem(), PemFiles.Public);
            changes.Add(replaced is null ? $"created a server certificate in {serverCrt}" : $"replaced the server certificate: {replaced}");
        }
        return new ServerPki(directory, authority, server, [], authority.Certificate, supplied: false, changes);
    }

    private static ServerPki FromSuppliedFiles(string directory, CertificateAuthority authority, TlsOptions tls, List<string> changes)
    {
        if (tls.CertificateFile is null || tls.KeyFile is null || tls.CaFile is null)
            throw new InvalidOperationException("--tls-cert, --tls-key and --tls-ca go together: the certificate, its key and the CA that issued it");
        foreach (var file in new[] { tls.CertificateFile, tls.KeyFile, tls.CaFile })
        {
            if (!File.Exists(file))
                throw new InvalidOperationException($"TLS file {file} does not exist");
        }
        X509Certificate2 server;
        var chain = new X509Certificate2Collection();
        try
        {
            server = X509Certificate2.CreateFromPemFile(tls.CertificateFile, tls.KeyFile);
            chain.ImportFromPemFile(tls.CertificateFile);
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new InvalidOperationException($"cannot use {tls.CertificateFile} with {tls.KeyFile}: {e.Message}", e);
        }
        // The file's first certificate is the server's own; the rest are intermediates to send along.
        chain.RemoveAt(0);
        var ca = CaTrust.LoadPem(tls.CaFile);
        using (var withChain = new X509Chain())
        {
            withChain.ChainPolicy.ExtraStore.AddRange(chain);
            if (!CaTrust.ChainsTo(server, ca, CaTrust.ServerAuth, withChain))
                throw new InvalidOperationException($"{tls.CertificateFile} is not a valid TLS server certificate issued by {tls.CaFile}");
        }
        changes.Add($"serving {tls.CertificateFile}, issued by {tls.CaFile}");
        return new ServerPki(directory, authority, server, chain, ca, supplied: true, changes);
    }

    /// <summary>Loopback, localhost, this host's name, every specific listen address, and the --tls-san extras.</summary>
    internal static (List<string> DnsNames, List<IPAddress> Addresses) RequiredNames(IEnumerable<string> extra, IEnumerable<IPAddress> listen)
    {
        var dns = new List<string> { "localhost" };
        var host = Environment.MachineName.ToLowerInvariant();
        if (host.Length > 0 && host != "localhost")
            dns.Add(host);
        var addresses = new List<IPAddress> { IPAddress.Loopback, IPAddress.IPv6Loopback };
        addresses.AddRange(listen.Where(a => !a.Equals(IPAddress.Any) && !a.Equals(IPAddress.IPv6Any)));
        foreach (var name in extra.Select(e => e.Trim()).Where(e => e.Length > 0))
        {
            if (IPAddress.TryParse(name, out var ip))
                addresses.Add(ip);
            else
                dns.Add(name.ToLowerInvariant());
        }
        return (dns.Distinct().ToList(), addresses.Distinct().ToList());
    }

    private static string? ReasonToReplace(X509Certificate2 server, X509Certificate2 ca, List<string> dnsNames, List<IPAddress> addresses, TimeProvider time)
    {
        if (!CaTrust.ChainsTo(server, ca, CaTrust.ServerAuth))
            return "not issued by the current CA, or expired";
        if (new DateTimeOffset(server.NotAfter.ToUniversalTime()) - time.GetUtcNow() < RenewBefore)
            return $"it expires on {server.NotAfter.ToUniversalTime():yyyy-MM-dd}";
        var has = CaTrust.Names(server).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var missing = dnsNames.Concat(addresses.Select(a => a.ToString())).Where(n => !has.Contains(n)).ToList();
        return missing.Count > 0 ? $"it lacks {string.Join(", ", missing)}" : null;
    }

    public void Dispose()
    {
        ServerCertificate.Dispose();
        if (!ReferenceEquals(Ca, Authority.Certificate))
            Ca.Dispose();
        Authority.Dispose();
    }
}
