namespace Kumo.Cli;

/// <summary>Files the CLI downloads (backups, audit exports): written beside the target, then renamed, mode 0600.</summary>
internal static class PrivateFile
{
    /// <summary>A broken download never replaces a good file, and nobody else can read what it holds.</summary>
    public static async Task<T> WriteAsync<T>(string path, Func<FileStream, Task<T>> write)
    {
        var directory = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(directory))
            throw new UsageException($"directory {directory} does not exist");
        var temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.part");
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            T result;
            await using (var file = new FileStream(temp, options))
                result = await write(file);
            File.Move(temp, path, overwrite: true);
            return result;
        }
        finally
        {
            File.Delete(temp);
        }
    }
}
