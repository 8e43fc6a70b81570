using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Kumo.Server.Images;

/// <summary>What qemu-img info says about one file (no backing chain is ever followed for uploads).</summary>
public sealed record QemuImgInfo(string Format, long VirtualSize, string? BackingFile, string? DataFile, IReadOnlyList<string> ExtentFiles);

/// <summary>
/// qemu-img, always with an explicit -f (the format Kumo detected itself), so qemu never probes an untrusted file,
/// and with -U (force-share) where it only reads.
/// </summary>
public static class QemuImg
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static async Task<QemuImgInfo> InfoAsync(string path, string format, CancellationToken ct)
    {
        var r = await RunAsync(["info", "-U", "-f", format, "--output=json", path], null, ct);
        if (r.ExitCode != 0) throw ImageProblems.Rejected($"qemu-img cannot read it as {format}: {FirstLine(r.Stderr)}");
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        var backing = Str(root, "backing-filename") ?? Str(root, "full-backing-filename");
        string? dataFile = null;
        var extents = new List<string>();
        if (root.TryGetProperty("format-specific", out var fs) && fs.TryGetProperty("data", out var data))
        {
            dataFile = Str(data, "data-file");
            if (data.TryGetProperty("extents", out var ex) && ex.ValueKind == JsonValueKind.Array)
                extents.AddRange(ex.EnumerateArray().Select(e => Str(e, "filename")).OfType<string>());
        }
        return new QemuImgInfo(Str(root, "format") ?? format, root.GetProperty("virtual-size").GetInt64(), backing, dataFile, extents);
    }

    /// <summary>qemu-img check: 0 clean, 3 only leaked clusters (harmless), 63 the format has no check; 1 or 2 is damage.</summary>
    public static async Task<string?> CheckAsync(string path, string format, CancellationToken ct)
    {
        var r = await RunAsync(["check", "-U", "-f", format, path], null, ct);
        return r.ExitCode switch
        {
            0 or 3 or 63 => null,
            2 => $"qemu-img check found corruption ({CountErrors(r.Stdout + r.Stderr)})",
            _ => $"qemu-img check could not complete: {FirstLine(r.Stderr + r.Stdout)}",
        };
    }

    /// <summary>Converts, reporting the percentage qemu-img prints with -p.</summary>
    public static async Task ConvertAsync(string source, string sourceFormat, string target, string targetFormat, IProgress<double>? progress, CancellationToken ct)
    {
        var args = new List<string> { "convert", "-p", "-f", sourceFormat, "-O", targetFormat };
        if (targetFormat == "vmdk") args.AddRange(["-o", "subformat=streamOptimized"]);
        args.AddRange([source, target]);
        var r = await RunAsync(args, progress, ct);
        if (r.ExitCode != 0) throw ImageProblems.Rejected($"qemu-img convert failed: {FirstLine(r.Stderr)}");
    }

    public static async Task<Result> RunAsync(IEnumerable<string> args, IProgress<double>? progress, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("qemu-img")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start qemu-img");
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync(ct);
        var stdout = progress is null ? p.StandardOutput.ReadToEndAsync(ct) : ReadProgressAsync(p.StandardOutput, progress, ct);
        try
        {
            await p.WaitForExitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>qemu-img -p writes "    (12.34/100%)\r" repeatedly.</summary>
    private static async Task<string> ReadProgressAsync(StreamReader reader, IProgress<double> progress, CancellationToken ct)
    {
        var all = new StringBuilder();
        var current = new StringBuilder();
        var buffer = new char[256];
        int n;
        while ((n = await reader.ReadAsync(buffer.AsMemory(), ct)) > 0)
        {
            for (var i = 0; i < n; i++)
            {
                var c = buffer[i];
                all.Append(c);
                if (c is '\r' or '\n')
                {
                    var s = current.ToString().Trim().TrimStart('(');
                    var slash = s.IndexOf('/', StringComparison.Ordinal);
                    if (slash > 0 && double.TryParse(s[..slash], NumberStyles.Float, CultureInfo.InvariantCulture, out var pct))
                        progress.Report(pct);
                    current.Clear();
                }
                else
                {
                    current.Append(c);
                }
            }
        }
        return all.ToString();
    }

    private static string CountErrors(string output)
    {
        var errors = output.Split('\n').Count(l => l.StartsWith("ERROR", StringComparison.Ordinal));
        return errors > 0 ? $"{errors} errors; the file is damaged or truncated" : "the file is damaged or truncated";
    }

    private static string FirstLine(string s) =>
        s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "(no message)";
}
