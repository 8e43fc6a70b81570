using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;

namespace Kumo.Bench;

/// <summary>
/// Image import through kumod (upload of a VMDK over HTTPS, format detection, `qemu-img convert` to qcow2, `qemu-img
/// check`, SHA-256, catalogue entry: POST to the operation's "succeeded") against a bare `qemu-img convert -O qcow2`
/// of the same file. Runs alternate.
/// </summary>
internal static class ImportBench
{
    public const string Name = "import";

    private const int DataMiB = 192;
    private const int ZeroMiB = 64;

    public static async Task<BenchResult> RunAsync(BenchOptions options, CancellationToken ct)
    {
        const string baseline = "bare qemu-img convert -O qcow2 of the same VMDK on the same disk";
        if (!Repo.HasQemu()) return new BenchResult(Name, baseline) { Skipped = "qemu-img not installed (apt-get install qemu-utils)" };
        var dir = Directory.CreateTempSubdirectory("kumo-bench-import-").FullName;
        try
        {
            var vmdk = await MakeVmdkAsync(dir, ct);
            var size = new FileInfo(vmdk).Length;
            await Repo.EnsureTinyImageAsync(ct);
            await using var kumod = await KumodProcess.StartAsync(Repo.ImagesDir, ct);

            var runs = Math.Clamp(options.Runs, 1, 5);
            var kumo = new List<double>();
            var answered = new List<double>();
            var bare = new List<double>();
            for (var i = 0; i < runs; i++)
            {
                bare.Add(await BareAsync(vmdk, Path.Combine(dir, "out.qcow2"), ct));
                var (total, post) = await KumoAsync(kumod.Http, vmdk, $"imp{i}", ct);
                kumo.Add(total);
                answered.Add(post);
            }
            var (kMed, bMed) = (Stats.Median(kumo), Stats.Median(bare));
            double MiBps(double ms) => size / (double)(1 << 20) / (ms / 1000);
            var result = new BenchResult(Name, baseline);
            result.Rows.Add(new($"import throughput, {size >> 20} MiB VMDK (median of {runs})", MiBps(kMed), "MiB/s", MiBps(bMed)));
            result.Rows.Add(new("import time (median)", kMed, "ms", bMed));
            result.Notes.Add($"the VMDK holds {DataMiB} MiB of random data and {ZeroMiB} MiB of zeros; Kumo also uploads it over HTTPS, stores it, checks it and hashes it, which the bare convert does not");
            result.Notes.Add($"of Kumo's time, {Stats.Median(answered):0} ms (median) pass before the POST is answered: upload to disk, format detection, qemu-img info and check of the upload; the rest is convert, check, SHA-256 and the catalogue write");
            result.Notes.Add($"per run, kumo: {string.Join(", ", kumo.Select(F))} ms; bare: {string.Join(", ", bare.Select(F))} ms");
            result.Details["fileBytes"] = size;
            result.Details["kumoMs"] = kumo.Select(v => Math.Round(v, 1)).ToList();
            result.Details["bareMs"] = bare.Select(v => Math.Round(v, 1)).ToList();
            return result;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string F(double v) => v.ToString("0", CultureInfo.InvariantCulture);

    /// <summary>A raw disk of random data followed by zeros, converted to VMDK (a format users bring from elsewhere).</summary>
    private static async Task<string> MakeVmdkAsync(string dir, CancellationToken ct)
    {
        var raw = Path.Combine(dir, "disk.raw");
        await using (var f = File.Create(raw))
        {
            var block = new byte[1 << 20];
            for (var i = 0; i < DataMiB; i++)
            {
                RandomNumberGenerator.Fill(block);
                await f.WriteAsync(block, ct);
            }
            f.SetLength((long)(DataMiB + ZeroMiB) << 20);
        }
        var vmdk = Path.Combine(dir, "disk.vmdk");
        await BootBench.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "vmdk", raw, vmdk], ct);
        File.Delete(raw);
        return vmdk;
    }

    private static async Task<double> BareAsync(string vmdk, string output, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        await BootBench.RunAsync("qemu-img", ["convert", "-O", "qcow2", vmdk, output], ct);
        var ms = KumoClient.Ms(start);
        File.Delete(output);
        return ms;
    }

    /// <summary>One import; returns POST to succeeded, and POST to the POST's answer, in ms.</summary>
    private static async Task<(double TotalMs, double AnsweredMs)> KumoAsync(HttpClient http, string vmdk, string name, CancellationToken ct)
    {
        var start = Stopwatch.GetTimestamp();
        double answered;
        await using (var file = File.OpenRead(vmdk))
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/v1/images/import?name={name}") { Content = new StreamContent(file, 1 << 20) };
            request.Content.Headers.ContentType = new("application/octet-stream");
            request.Content.Headers.ContentLength = file.Length;
            using var response = await http.SendAsync(request, ct);
            if (response.StatusCode != HttpStatusCode.Accepted)
                throw new InvalidOperationException($"import {name}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
            answered = KumoClient.Ms(start);
            await KumoClient.FollowAsync(http, await response.Content.ReadFromJsonAsync<JsonElement>(ct), start, $"import {name}", ct);
        }
        var ms = KumoClient.Ms(start);
        using var delete = await http.DeleteAsync($"/api/v1/images/{name}", ct);
        if (!delete.IsSuccessStatusCode) throw new InvalidOperationException($"image rm {name}: {(int)delete.StatusCode} {await delete.Content.ReadAsStringAsync(ct)}");
        return (ms, answered);
    }
}
