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

    public const string TokenVariable = "KUMO_TOKEN";

    /// <summary>KUMO_TOKEN, then token= in the config file; null when not logged in.</summary>
    public static string? ResolveToken(CliEnvironment env)
    {
        var fromEnv = env.GetVariable(TokenVariable);
        if (!string.IsNullOrWhiteSpace(fromEnv)) return fromEnv.Trim();
        var fromFile = Read(env.ConfigPath).GetValueOrDefault("token");
        return string.IsNullOrWhiteSpace(fromFile) ? null : fromFile.Trim();
    }

    public const string ProjectVariable = "KUMO_PROJECT";

    /// <summary>--project, then KUMO_PROJECT, then project= in the config file; null means kumod's default (the personal project).</summary>
    public static string? ResolveProject(string? flag, CliEnvironment env)
    {
        if (!string.IsNullOrWhiteSpace(flag))
            return Check.Name(flag.Trim(), "project");
        var fromEnv = env.GetVariable(ProjectVariable);
        if (!string.IsNullOrWhiteSpace(fromEnv))
            return Check.Name(fromEnv.Trim(), $"{ProjectVariable} project");
        var fromFile = Read(env.ConfigPath).GetValueOrDefault("project");
        return string.IsNullOrWhiteSpace(fromFile) ? null : Check.Name(fromFile, $"project in {env.ConfigPath}");
    }

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

    /// <summary>Removes one key, keeping the other lines; true when it was there.</summary>
    public static bool Remove(string path, string key)
    {
        if (!File.Exists(path))
            return false;
        var lines = File.ReadAllLines(path).ToList();
        var removed = lines.RemoveAll(l => l.Trim().StartsWith(key + "=", StringComparison.Ordinal) || l.Trim().StartsWith(key + " ", StringComparison.Ordinal));
        if (removed > 0)
            WritePrivate(path, lines.Count == 0 ? "" : string.Join('\n', lines) + "\n");
        return removed > 0;
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
