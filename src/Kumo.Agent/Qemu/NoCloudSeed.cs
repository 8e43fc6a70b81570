using System.Text;
using System.Text.Json;

namespace Kumo.Agent.Qemu;

/// <summary>
/// A cloud-init NoCloud seed: a small ISO labelled "cidata" holding user-data and meta-data, attached to the guest as
/// a read-only virtio disk. It creates the user <see cref="User"/> with the VM's SSH keys and (hashed) password; the
/// instance id in meta-data makes cloud-init apply it once per instance, not on every boot.
/// </summary>
/// <param name="SshKeys">OpenSSH public keys, one per line (kumod checked their form).</param>
/// <param name="PasswordHash">A crypt(3) SHA-512 hash, or empty for key-only login.</param>
public sealed record NoCloudSeed(string InstanceId, string Hostname, string SshKeys, string PasswordHash)
{
    public const string User = "debian";

    public string UserData()
    {
        var user = new Dictionary<string, object>
        {
            ["name"] = User,
            ["gecos"] = "Kumo user",
            ["groups"] = new[] { "adm", "sudo" },
            ["sudo"] = "ALL=(ALL) NOPASSWD:ALL",
            ["shell"] = "/bin/bash",
            ["lock_passwd"] = PasswordHash.Length == 0,
            ["ssh_authorized_keys"] = SshKeys.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
        };
        if (PasswordHash.Length > 0) user["passwd"] = PasswordHash;
        var config = new Dictionary<string, object>
        {
            ["users"] = new object[] { user },
            ["ssh_pwauth"] = PasswordHash.Length > 0,
        };
        // JSON is YAML: serializing sidesteps quoting keys and hashes by hand.
        return "#cloud-config\n" + JsonSerializer.Serialize(config) + "\n";
    }

    public string MetaData() =>
        $"instance-id: {JsonSerializer.Serialize(InstanceId)}\nlocal-hostname: {JsonSerializer.Serialize(Hostname)}\n";

    /// <summary>Writes the seed image to <paramref name="path"/> with cloud-localds (cloud-image-utils), unless it exists.</summary>
    public async Task EnsureAsync(string path, CancellationToken ct)
    {
        if (File.Exists(path)) return;
        var work = path + ".d";
        Directory.CreateDirectory(work);
        try
        {
            var userData = Path.Combine(work, "user-data");
            var metaData = Path.Combine(work, "meta-data");
            await File.WriteAllTextAsync(userData, UserData(), new UTF8Encoding(false), ct);
            await File.WriteAllTextAsync(metaData, MetaData(), new UTF8Encoding(false), ct);
            var tmp = path + ".tmp";
            var r = await ProcessRunner.RunAsync("cloud-localds", [tmp, userData, metaData], ct);
            if (r.ExitCode != 0)
                throw new InvalidOperationException($"cloud-localds failed (package cloud-image-utils): {r.Stderr.Trim()}");
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
