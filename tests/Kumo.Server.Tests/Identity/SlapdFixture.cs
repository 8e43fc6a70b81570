using System.Diagnostics;
using System.DirectoryServices.Protocols;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Kumo.Server.Tests.TestSupport;

namespace Kumo.Server.Tests.Identity;

/// <summary>
/// A real OpenLDAP <c>slapd</c> (Debian's package) on a free loopback port, with its configuration
/// (slapd.conf, mdb backend) and a small directory generated in a temp dir and loaded with slapadd.
/// The process and the directory are removed on dispose. Needs slapd and ldap-utils installed
/// (<c>scripts/install-deps.sh --test</c>); Debian's default slapd instance is neither needed nor touched.
/// <code>
/// dc=kumo,dc=test
///   ou=people       alice, bob, carol (employeeType: disabled), dave;
///                   eve twice (here and under ou=contractors) to make "eve" ambiguous
///   ou=groups       cn=kumo-admins (groupOfNames, member: dave), cn=kumo-operators (posixGroup, memberUid: bob)
///   ou=services     cn=kumo (the service account the search binds as)
/// </code>
/// Anyone may read everything but userPassword, which only serves binds.
/// </summary>
public sealed class SlapdFixture : IAsyncLifetime
{
    public const string Suffix = "dc=kumo,dc=test";
    public const string PeopleDn = "ou=people," + Suffix;
    public const string AdminsGroupDn = "cn=kumo-admins,ou=groups," + Suffix;
    public const string OperatorsGroupDn = "cn=kumo-operators,ou=groups," + Suffix;
    public const string ServiceDn = "cn=kumo,ou=services," + Suffix;
    public const string ServicePassword = "service-Secret-1";
    public const string AlicePassword = "alice-Secret-1";
    public const string BobPassword = "bob-Secret-1";
    public const string CarolPassword = "carol-Secret-1";
    public const string DavePassword = "dave-Secret-1";
    public const string EvePassword = "eve-Secret-1";

    private const string Slapd = "/usr/sbin/slapd";
    private const string Slapadd = "/usr/sbin/slapadd";
    private const string Slappasswd = "/usr/sbin/slappasswd";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);

    private readonly TempDirectory _dir = new();
    private readonly StringBuilder _output = new();
    private Process? _process;

    public int Port { get; private set; }

    public string Url => $"ldap://127.0.0.1:{Port}";

    /// <summary>Where the configuration and the database live.</summary>
    public string WorkDirectory => _dir.Path;

    /// <summary>slapd's process id while it runs.</summary>
    public int? ProcessId => _process?.Id;

    public async Task InitializeAsync()
    {
        try
        {
            await StartAsync();
        }
        catch
        {
            // xunit does not dispose a fixture whose start failed: leave no process or directory behind.
            await DisposeAsync();
            throw;
        }
    }

    private async Task StartAsync()
    {
        foreach (var tool in new[] { Slapd, Slapadd, Slappasswd })
        {
            if (!File.Exists(tool))
            {
                throw new InvalidOperationException($"{tool} is missing: install slapd and ldap-utils (scripts/install-deps.sh --test)");
            }
        }
        var config = _dir.File("slapd.conf");
        Directory.CreateDirectory(_dir.File("data"));
        await File.WriteAllTextAsync(config, Config());
        await File.WriteAllTextAsync(_dir.File("tree.ldif"), await TreeAsync());
        await RunAsync(Slapadd, "-f", config, "-l", _dir.File("tree.ldif"));

        // The port is free when we look; another process may take it before slapd binds, so retry.
        for (var attempt = 1; ; attempt++)
        {
            Port = FreePort();
            if (await TryStartAsync(config))
            {
                return;
            }
            if (attempt == 3)
            {
                throw new InvalidOperationException($"slapd did not start:\n{Output()}");
            }
        }
    }

    /// <summary>Kills slapd now, leaving <see cref="Url"/> pointing at a closed port.</summary>
    public async Task StopAsync()
    {
        if (_process is { } process)
        {
            _process = null;
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
            await process.WaitForExitAsync();
            process.Dispose();
        }
    }

    public async Task DisposeAsync()
    {
        await StopAsync();
        _dir.Dispose();
    }

    private async Task<bool> TryStartAsync(string config)
    {
        // -d keeps slapd in the foreground as our child, so killing it needs no pid file.
        var process = new Process
        {
            StartInfo = new ProcessStartInfo(Slapd)
            {
                ArgumentList = { "-f", config, "-h", $"{Url}/", "-d", "0" },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            },
        };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        var deadline = DateTime.UtcNow + StartTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                await StopAsync();
                return false;
            }
            if (Answers())
            {
                return true;
            }
            await Task.Delay(50);
        }
        await StopAsync();
        throw new TimeoutException($"slapd did not answer on {Url} within {StartTimeout.TotalSeconds} s:\n{Output()}");
    }

    // slapd listens before its database is open, so a TCP connect is not enough: ask for the suffix.
    private bool Answers()
    {
        try
        {
            using var connection = new LdapConnection(new LdapDirectoryIdentifier("127.0.0.1", Port))
            {
                AuthType = AuthType.Anonymous,
                Timeout = TimeSpan.FromSeconds(1),
            };
            connection.SessionOptions.ProtocolVersion = 3;
            var response = (SearchResponse)connection.SendRequest(
                new SearchRequest(Suffix, "(objectClass=*)", SearchScope.Base, "1.1"), TimeSpan.FromSeconds(1));
            return response.Entries.Count == 1;
        }
        catch (DirectoryException)
        {
            return false;
        }
    }

    private string Config()
    {
        var schema = "/etc/ldap/schema";
        return $"""
            include {schema}/core.schema
            include {schema}/cosine.schema
            include {schema}/inetorgperson.schema
            include {schema}/nis.schema
            pidfile {_dir.File("slapd.pid")}
            argsfile {_dir.File("slapd.args")}
            modulepath /usr/lib/ldap
            moduleload back_mdb
            database mdb
            maxsize 16777216
            suffix "{Suffix}"
            directory {_dir.File("data")}
            access to attrs=userPassword
                by anonymous auth
                by * none
            access to *
                by * read

            """;
    }

    private static async Task<string> TreeAsync()
    {
        // One LDIF record; a blank line ends it.
        static string Person(string uid, string parent, string cn, string hash, params string[] extra) =>
            string.Join('\n', [$"dn: uid={uid},{parent}", "objectClass: inetOrgPerson", $"uid: {uid}", $"cn: {cn}",
                $"sn: {cn.Split(' ')[^1]}", $"userPassword: {hash}", .. extra]) + "\n\n";

        var ldif = new StringBuilder($"""
            dn: {Suffix}
            objectClass: dcObject
            objectClass: organization
            dc: kumo
            o: Kumo tests

            dn: {PeopleDn}
            objectClass: organizationalUnit
            ou: people

            dn: ou=contractors,{PeopleDn}
            objectClass: organizationalUnit
            ou: contractors

            dn: ou=groups,{Suffix}
            objectClass: organizationalUnit
            ou: groups

            dn: ou=services,{Suffix}
            objectClass: organizationalUnit
            ou: services

            dn: {ServiceDn}
            objectClass: organizationalRole
            objectClass: simpleSecurityObject
            cn: kumo
            userPassword: {await HashAsync(ServicePassword)}

            dn: {AdminsGroupDn}
            objectClass: groupOfNames
            cn: kumo-admins
            member: uid=dave,{PeopleDn}

            dn: {OperatorsGroupDn}
            objectClass: posixGroup
            cn: kumo-operators
            gidNumber: 5000
            memberUid: bob


            """);
        ldif.Append(Person("alice", PeopleDn, "Alice Liddell", await HashAsync(AlicePassword),
            "displayName: Alice Liddell", "mail: alice@kumo.test", "employeeType: student"));
        ldif.Append(Person("bob", PeopleDn, "Bob Builder", await HashAsync(BobPassword), "mail: bob@kumo.test"));
        ldif.Append(Person("carol", PeopleDn, "Carol Disabled", await HashAsync(CarolPassword), "employeeType: disabled"));
        ldif.Append(Person("dave", PeopleDn, "Dave Admin", await HashAsync(DavePassword), "displayName: Dave the Admin"));
        ldif.Append(Person("eve", PeopleDn, "Eve One", await HashAsync(EvePassword)));
        ldif.Append(Person("eve", $"ou=contractors,{PeopleDn}", "Eve Two", await HashAsync(EvePassword)));
        return ldif.ToString();
    }

    private static async Task<string> HashAsync(string password) =>
        (await RunAsync(Slappasswd, "-h", "{SSHA}", "-s", password)).Trim();

    private static async Task<string> RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(file)} exited with {process.ExitCode}: {await stderr}");
        }
        return await stdout;
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    private string Output()
    {
        lock (_output)
        {
            return _output.ToString();
        }
    }
}
