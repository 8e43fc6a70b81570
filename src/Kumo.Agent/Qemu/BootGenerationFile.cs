using System.Globalization;

namespace Kumo.Agent.Qemu;

/// <summary>
/// Which spec generation a guest's running process was launched for, kept in a file beside its disk so an agent that
/// restarts knows what it adopts. The file says "G pending" from just before a launch until it succeeded, then "G".
/// A pending launch whose process is alive did happen; one whose process is absent was interrupted and never booted.
/// Both VM drivers keep it the same way.
/// </summary>
internal static class BootGenerationFile
{
    public static string In(string vmDir) => Path.Combine(vmDir, "booted-generation");

    /// <summary>The generation the guest booted; 0 when none is recorded (or the file cannot be read as one).</summary>
    public static long Read(string path, bool alive)
    {
        if (!File.Exists(path)) return 0;
        var parts = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0 || !long.TryParse(parts[0], CultureInfo.InvariantCulture, out var generation)) return 0;
        var pending = parts.Length > 1 && parts[1] == "pending";
        return pending && !alive ? generation - 1 : generation;
    }

    /// <summary>Just before a launch: if the agent dies right after, the adopted guest is known.</summary>
    public static Task MarkPendingAsync(string path, long generation, CancellationToken ct) =>
        AtomicFile.WriteAsync(path, $"{generation.ToString(CultureInfo.InvariantCulture)} pending", ct);

    public static Task MarkBootedAsync(string path, long generation, CancellationToken ct) =>
        AtomicFile.WriteAsync(path, generation.ToString(CultureInfo.InvariantCulture), ct);

    /// <summary>The launch failed: the guest still has the generation before it. Not cancellable, so it is always recorded.</summary>
    public static Task MarkFailedAsync(string path, long generation) =>
        AtomicFile.WriteAsync(path, (generation - 1).ToString(CultureInfo.InvariantCulture), CancellationToken.None);
}
