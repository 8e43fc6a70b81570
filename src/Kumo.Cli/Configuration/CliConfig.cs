namespace Kumo.Cli.Configuration;

/// <summary>Where the kumod URL came from, for `kumo config show` and error messages.</summary>
internal enum UrlSource
{
    Flag,
    Environment,
    ConfigFile,
    Default,
}

internal sealed record ResolvedUrl(Uri Url, UrlSource Source);

/// <summary>The CLI's config file: plain <c>key=value</c> lines, <c>#</c> comments, private to the user.</summary>
internal static class CliConfig
{
    public const string DefaultUrl = "https://127.0.0.1:7400";
    public const string UrlVariable = "KUMO_URL";

    private const UnixFileMode PrivateFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>--url, then KUMO_URL, then the config file's url=, then the default.</summary>
    public static ResolvedUrl ResolveUrl(string? flag, CliEnvironment env)
    {
        if (!string.IsNullOrWhiteSpace(flag))
            return new(ParseUrl(flag, "--url"), UrlSource.Flag);
        var fromEnv = env.GetVariable(UrlVariable);
        if (!string.IsNullOrWhiteSpace(fromEnv))
            return new(ParseUrl(fromEnv, UrlVariable), UrlSource.Environment);
        var fromFile = Read(env.ConfigPath).GetValueOrDefault("url");
        if (!string.IsNullOrWhiteSpace(fromFile))
            return new(ParseUrl(fromFile, $"url in {env.ConfigPath}"), UrlSource.ConfigFile);
        return new(new Uri(DefaultUrl), UrlSource.Default);
    }

    /// <summary>Accepts http(s) URLs; a bare host:port means https (plain http only when asked for by name).</summary>
    public static Uri ParseUrl(string text, string where)
    {
        var trimmed = text.Trim();
        if (!trimmed.Contains("://", StringComparison.Ordinal))
            trimmed = "https://" + trimmed;
        if (Uri.TryCreate(trimmed, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            return uri;
        throw new UsageException($"{where}: '{text}' is not an http(s) URL such as {DefaultUrl}");
    }

    public static IReadOnlyDictionary<string, string> Read(string path)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path))
            return values;
        foreach (var line in File.ReadAllLines(path))
        {
            var trimmed = line.Trim();
            var eq = trimmed.IndexOf('=', StringComparison.Ordinal);
            if (trimmed.StartsWith('#') || eq <= 0)
                continue;
            values[trimmed[..eq].Trim()] = trimmed[(eq + 1)..].Trim();
        }
        return values;
    }

    /// <summary>Sets one key, keeping the other lines, atomically; the file ends up 0600 in a 0700 directory.</summary>
    public static void Set(string path, string key, string value)
    {
        var lines = File.Exists(path) ? File.ReadAllLines(path).ToList() : [];
        var index = lines.FindIndex(l => l.Trim().StartsWith(key + "=", StringComparison.Ordinal) || l.Trim().StartsWith(key + " ", StringComparison.Ordinal));
        if (index >= 0)
            lines[index] = $"{key}={value}";
        else
            lines.Add($"{key}={value}");
        WritePrivate(path, string.Join('\n', lines) + "\n");
    }

    internal static void WritePrivate(string path, string content)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
            File.WriteAllText(path, content);
            return;
        }
        Directory.CreateDirectory(directory, PrivateDirectory);
        File.SetUnixFileMode(directory, PrivateDirectory);
        var temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = PrivateFile };
            using (var writer = new StreamWriter(temp, options))
                writer.Write(content);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }
    }
}
