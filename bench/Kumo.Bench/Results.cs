using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kumo.Bench;

/// <summary>One line of the results table. Ratio is always Value / Baseline.</summary>
internal sealed record ResultRow(string Metric, double Value, string Unit, double? Baseline = null, string? Target = null, bool? Met = null)
{
    public double? Ratio => Baseline is > 0 ? Value / Baseline : null;
}

/// <summary>What one benchmark measured: table rows, what its baseline is, and free-form details for the JSON.</summary>
internal sealed record BenchResult(string Name, string Baseline)
{
    public List<ResultRow> Rows { get; } = [];
    public List<string> Notes { get; } = [];
    public Dictionary<string, object?> Details { get; } = [];
    public string? Skipped { get; init; }
}

/// <summary>Prints the table and writes the JSON file.</summary>
internal static class ResultsPrinter
{
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static string Table(IReadOnlyList<BenchResult> results)
    {
        var lines = new List<string[]> { new[] { "benchmark", "metric", "kumo", "baseline", "ratio", "target" } };
        foreach (var r in results)
        {
            if (r.Skipped is not null)
            {
                lines.Add([r.Name, $"skipped: {r.Skipped}", "", "", "", ""]);
                continue;
            }
            foreach (var row in r.Rows)
            {
                var target = row.Target is null ? "" : $"{row.Target} {(row.Met is true ? "met" : row.Met is false ? "MISSED" : "")}".TrimEnd();
                lines.Add([r.Name, row.Metric, Format(row.Value, row.Unit), row.Baseline is { } b ? Format(b, row.Unit) : "",
                    row.Ratio is { } q ? q.ToString("0.00", CultureInfo.InvariantCulture) + "x" : "", target]);
            }
        }
        var widths = Enumerable.Range(0, 6).Select(i => lines.Max(l => l[i].Length)).ToArray();
        var sb = new StringBuilder();
        for (var n = 0; n < lines.Count; n++)
        {
            var cells = lines[n].Select((c, i) => i is 2 or 3 or 4 ? c.PadLeft(widths[i]) : c.PadRight(widths[i]));
            sb.AppendLine(string.Join("  ", cells).TrimEnd());
            if (n == 0) sb.AppendLine(string.Join("  ", widths.Select(w => new string('-', w))));
        }
        foreach (var r in results)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"{r.Name}: baseline = {r.Baseline}");
            foreach (var note in r.Notes) sb.AppendLine(CultureInfo.InvariantCulture, $"  {note}");
        }
        return sb.ToString();
    }

    public static string Format(double value, string unit) => unit switch
    {
        "ms" => value.ToString(Math.Abs(value) < 10 ? "0.00" : "0", CultureInfo.InvariantCulture) + " ms",
        "/s" => value.ToString("N0", CultureInfo.InvariantCulture) + "/s",
        "MiB" => value.ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        "" => value.ToString(value == Math.Floor(value) ? "N0" : "0.0", CultureInfo.InvariantCulture),
        _ => value.ToString("0.##", CultureInfo.InvariantCulture) + " " + unit,
    };

    /// <summary>The 1-minute load average: other work on the machine skews every number here.</summary>
    public static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "?";
        }
    }

    public static async Task WriteJsonAsync(string path, BenchOptions options, IReadOnlyList<BenchResult> results, TimeSpan elapsed, string loadBefore)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var doc = new
        {
            finishedAt = DateTimeOffset.UtcNow,
            elapsedSeconds = Math.Round(elapsed.TotalSeconds, 1),
            machine = new { cores = Environment.ProcessorCount, os = Environment.OSVersion.VersionString, runtime = Environment.Version.ToString(), loadAverageBefore = loadBefore, loadAverageAfter = LoadAverage() },
            options = new { options.Only, options.Runs },
            benchmarks = results.Select(r => new
            {
                name = r.Name,
                baseline = r.Baseline,
                skipped = r.Skipped,
                rows = r.Rows.Select(x => new { metric = x.Metric, value = Math.Round(x.Value, 3), unit = x.Unit, baseline = x.Baseline, ratio = x.Ratio, target = x.Target, met = x.Met }),
                notes = r.Notes,
                details = r.Details,
            }),
        };
        await File.WriteAllTextAsync(path, JsonSerializer.Serialize(doc, JsonOptions) + "\n");
    }
}
