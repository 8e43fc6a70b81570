using Dapper;
using Kumo.Core;
using Kumo.Server.Api;
using Kumo.Server.Identity;
using Kumo.Server.Operations;
using Kumo.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Images;

/// <summary>What POST /images/import asks for (from the query string; the body is the file).</summary>
public sealed record ImageImportRequest(string? Name, string? Type, string? Readiness, string? Description);

/// <summary>
/// Imports an uploaded disk image. The request streams the file into a work directory, and everything that can be
/// judged quickly is judged before answering: the format from the content, archives unpacked safely, no backing or
/// data files, the declared size, qemu-img check. A refusal is a 4xx problem and deletes the work directory. What is
/// slow (conversion to qcow2, the final check, the checksum) then runs as an operation (202). Only a complete,
/// checked file is renamed into the store, and only then is the catalogue row written; a failure at any step removes
/// the work directory, and a crash leaves it to <see cref="ImageStorage.RecoverAsync"/>.
/// </summary>
public sealed partial class ImageImporter(
    Database db, OperationStore operations, ImageStorage storage, IOptions<ImageOptions> options, IHostApplicationLifetime lifetime,
    TimeProvider time, ILogger<ImageImporter> logger)
{
    public const string OperationKind = "image-import";

    /// <summary>A validated upload, ready to convert.</summary>
    private sealed record Candidate(string WorkDir, string Disk, string QemuFormat, string SourceFormat, long VirtualSize);

    public async Task<Operation> ImportAsync(Caller caller, string project, ImageImportRequest req, Stream body, long? contentLength, CancellationToken ct)
    {
        var (name, type, readiness) = Validate(req);
        await EnsureNameFreeAsync(project, type, name, ct);
        var max = options.Value.MaxImageBytes;
        if (contentLength > max)
            throw ImageProblems.TooLarge($"the upload is {ByteSize.Human(contentLength.Value)}; the maximum image size is {ByteSize.Human(max)}");

        var work = storage.NewWorkDir();
        Candidate candidate;
        try
        {
            var upload = Path.Combine(work, "upload");
            await ReceiveAsync(body, upload, max, ct);
            candidate = await InspectAsync(work, upload, ct);
        }
        catch
        {
            ImageStorage.DeleteQuietly(work);
            throw;
        }

        Operation op;
        try
        {
            op = await operations.StartJobAsync(OperationKind, name, project, caller.UserId,
                $"received {candidate.SourceFormat} image; converting to qcow2", ct);
        }
        catch
        {
            ImageStorage.DeleteQuietly(work);
            throw;
        }
        var stopping = lifetime.ApplicationStopping;
        _ = Task.Run(() => ConvertAsync(op.Id, caller, project, name, type, readiness, req.Description, candidate, stopping), CancellationToken.None);
        return op;
    }

    private static (string Name, string Type, string Readiness) Validate(ImageImportRequest req)
    {
        var errors = new Dictionary<string, string[]>();
        if (Names.Validate(req.Name, "name") is { } bad) errors["name"] = [bad];
        var type = string.IsNullOrEmpty(req.Type) ? "vm" : req.Type;
        if (type != "vm") errors["type"] = [$"type '{type}' cannot be imported; only vm images can"];
        var readiness = string.IsNullOrEmpty(req.Readiness) ? ReadinessModes.None : req.Readiness;
        if (readiness is not (ReadinessModes.Marker or ReadinessModes.None or ReadinessModes.Timeout))
            errors["readiness"] = [$"'{readiness}' is not one of marker, timeout, none"];
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        return (req.Name!, type, readiness);
    }

    private async Task EnsureNameFreeAsync(string project, string type, string name, CancellationToken ct)
    {
        var taken = await db.ReadAsync(c => c.ExecuteScalar<long>(
            "SELECT COUNT(*) FROM images WHERE project IN (@project, 'system') AND type = @type AND name = @name",
            new { project, type, name }), ct);
        if (taken > 0) throw ProblemException.Conflict($"an image named '{name}' already exists");
    }

    private static async Task ReceiveAsync(Stream body, string path, long max, CancellationToken ct)
    {
        await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20, FileOptions.Asynchronous);
        var buffer = new byte[1 << 20];
        long total = 0;
        int n;
        while ((n = await body.ReadAsync(buffer, ct)) > 0)
        {
            total += n;
            if (total > max) throw ImageProblems.TooLarge($"the upload is larger than the maximum image size ({ByteSize.Human(max)})");
            await file.WriteAsync(buffer.AsMemory(0, n), ct);
        }
        if (total == 0) throw ImageProblems.Rejected("the upload is empty");
    }

    private async Task<Candidate> InspectAsync(string work, string upload, CancellationToken ct)
    {
        var kind = DiskFormat.Detect(upload);
        var disk = upload;
        var source = kind.ToString().ToLowerInvariant();
        if (kind is ContentKind.Gzip or ContentKind.Tar)
        {
            var archive = await ImageArchive.ExtractAsync(upload, kind == ContentKind.Gzip, work, options.Value.MaxImageBytes, ct);
            File.Delete(upload);
            disk = archive.Path;
            source = archive.ArchiveKind;
            kind = DiskFormat.Detect(disk);
            if (!DiskFormat.IsDisk(kind))
                throw ImageProblems.Rejected($"the {archive.ArchiveKind}'s disk '{archive.Member}' is not a disk image Kumo knows ({DiskFormat.Describe(disk)})");
        }
        else if (kind == ContentKind.Unknown)
        {
            throw ImageProblems.Rejected(
                $"unknown format: not qcow2, raw (MBR/GPT), VMDK, VHD, VHDX, a Vagrant box or an OVA ({DiskFormat.Describe(upload)})");
        }
        var format = DiskFormat.QemuName(kind);
        var info = await QemuImg.InfoAsync(disk, format, ct);
        if (info.BackingFile is { } backing)
            throw ImageProblems.Rejected($"the {format} image has a backing file ('{backing}'); images must be self-contained");
        if (info.DataFile is { } data)
            throw ImageProblems.Rejected($"the {format} image has an external data file ('{data}'); images must be self-contained");
        if (info.ExtentFiles.Any(e => Path.GetFullPath(e) != Path.GetFullPath(disk)))
            throw ImageProblems.Rejected($"the VMDK refers to other extent files ({string.Join(", ", info.ExtentFiles.Select(Path.GetFileName))}); upload a monolithic VMDK");
        if (info.VirtualSize <= 0)
            throw ImageProblems.Rejected("the image declares an empty disk");
        if (info.VirtualSize > options.Value.MaxVirtualBytes)
            throw ImageProblems.TooLarge($"the image declares a {ByteSize.Human(info.VirtualSize)} disk; the maximum is {ByteSize.Human(options.Value.MaxVirtualBytes)}");
        if (await QemuImg.CheckAsync(disk, format, ct) is { } damage)
            throw ImageProblems.Rejected(damage);
        return new Candidate(work, disk, format, source == "vpc" ? "vhd" : source, info.VirtualSize);
    }

    private async Task ConvertAsync(string opId, Caller caller, string project, string name, string type, string readiness, string? description,
        Candidate c, CancellationToken ct)
    {
        var id = Ulid.NewUlid().ToString().ToLowerInvariant();
        var final = storage.PathOf(id);
        var stored = false;
        try
        {
            var converted = Path.Combine(c.WorkDir, "image.qcow2");
            var lastReported = -10.0;
            var progress = new Progress<double>(pct =>
            {
                if (pct - lastReported < 10 && pct < 100) return;
                lastReported = pct;
                _ = operations.ProgressAsync(opId, $"converting {c.SourceFormat} to qcow2: {pct:0}%", CancellationToken.None);
            });
            await QemuImg.ConvertAsync(c.Disk, c.QemuFormat, converted, "qcow2", progress, ct);
            File.Delete(c.Disk);
            await operations.ProgressAsync(opId, "checking the converted image", ct);
            if (await QemuImg.CheckAsync(converted, "qcow2", ct) is { } damage) throw ImageProblems.Rejected("the converted image: " + damage);
            await operations.ProgressAsync(opId, "computing its SHA-256", ct);
            var sha = await ImageStorage.Sha256Async(converted, ct);
            var size = new FileInfo(converted).Length;
            Directory.CreateDirectory(storage.Dir);
            File.Move(converted, final);
            stored = true;
            await db.WriteAsync(ctx => ctx.Execute(
                """
                INSERT INTO images (id, name, project, type, readiness, description, built_in, created_at, owner_id, sha256, size_bytes, virtual_size_bytes, source_format)
                VALUES ($id, $name, $project, $type, $readiness, $description, 0, $now, $owner, $sha, $size, $virtual, $source)
                """,
                ("$id", id), ("$name", name), ("$project", project), ("$type", type), ("$readiness", readiness), ("$description", description),
                ("$now", Json.Now(time)), ("$owner", caller.UserId), ("$sha", sha), ("$size", size), ("$virtual", c.VirtualSize), ("$source", c.SourceFormat)), ct);
            await operations.FinishAsync(opId, true, $"image {name} imported ({c.SourceFormat}, {ByteSize.Human(c.VirtualSize)} disk, sha256 {sha[..12]}…)", null, CancellationToken.None);
            LogImported(name, id, c.SourceFormat);
        }
        catch (Exception e)
        {
            if (stored) File.Delete(final);
            var why = ImageFailure.Why(e, name);
            LogImportFailed(name, why);
            await ImageFailure.RecordAsync(operations, opId, "import failed", why, reason => LogImportFailed(name, reason));
        }
        finally
        {
            ImageStorage.DeleteQuietly(c.WorkDir);
        }
    }

    [LoggerMessage(LogLevel.Information, "image {Name} imported as {Id} (from {Source})")]
    private partial void LogImported(string name, string id, string source);

    [LoggerMessage(LogLevel.Warning, "import of image {Name} failed: {Reason}")]
    private partial void LogImportFailed(string name, string reason);
}
