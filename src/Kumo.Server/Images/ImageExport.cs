using Kumo.Server.Api;
using Microsoft.AspNetCore.Http;

namespace Kumo.Server.Images;

/// <summary>GET /images/{name}/content: the stored qcow2 as it is, or converted to raw or VMDK in a work directory first.</summary>
public sealed class ImageExport(ImageService images, ImageStorage storage)
{
    public async Task WriteAsync(HttpContext http, string project, string name, string? format, CancellationToken ct)
    {
        format = string.IsNullOrEmpty(format) ? "qcow2" : format;
        if (format is not ("qcow2" or "raw" or "vmdk"))
            throw ProblemException.Validation("format", $"'{format}' is not one of qcow2, raw, vmdk");
        var row = await images.FindAsync(project, name, ct);
        var path = storage.PathOf(row.Id);
        if (row.Sha256 is null || !File.Exists(path))
            throw ProblemException.InvalidState($"image '{name}' is built in: it has no stored disk to export");
        string? work = null;
        try
        {
            if (format != "qcow2")
            {
                work = storage.NewWorkDir();
                var converted = Path.Combine(work, "export." + format);
                await QemuImg.ConvertAsync(path, "qcow2", converted, format, null, ct);
                path = converted;
            }
            await using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous | FileOptions.SequentialScan);
            http.Response.ContentType = "application/octet-stream";
            http.Response.ContentLength = f.Length;
            http.Response.Headers.ContentDisposition = $"attachment; filename={name}.{format}";
            if (format == "qcow2") http.Response.Headers["X-Kumo-Sha256"] = row.Sha256;
            await f.CopyToAsync(http.Response.Body, 1 << 20, ct);
        }
        finally
        {
            ImageStorage.DeleteQuietly(work);
        }
    }
}
