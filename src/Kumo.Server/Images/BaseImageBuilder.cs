using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
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

/// <summary>
/// Base images Kumo builds itself from a distribution's package mirror (no registry, no downloaded cloud image), shared
/// by every project (they live in the 'system' project). A vm image is built here by scripts/build-debian-image.sh
/// (mmdebstrap, minutes) as an operation whose progress is the script's step lines, cached by the script's hash so the
/// same recipe is never built twice on one machine, then stored and fetched by nodes like an imported image. A
/// container image is only catalogued here: each node builds the rootfs into its own engine on first use (the
/// engine lives on the node, not with kumod).
/// </summary>
public sealed partial class BaseImageBuilder(
    Database db, OperationStore operations, ImageStorage storage, IOptions<ImageOptions> options, IHostApplicationLifetime lifetime,
    TimeProvider time, ILogger<BaseImageBuilder> logger)
{
    public const string OperationKind = "image-build";
    public const string Script = "build-debian-image.sh";
    private const string ScriptPrefix = "build-debian-image: ";

    /// <summary>The distributions Kumo can build, with the description their images get.</summary>
    private static readonly Dictionary<string, (string Vm, string Container)> Distros = new(StringComparer.Ordinal)
    {
        ["debian"] = (
            "Debian 12 (mmdebstrap): cloud kernel, systemd, cloud-init (user debian, --ssh-key/--password), sshd; signals readiness",
            "Debian 12 minbase (mmdebstrap), built on each node on first use"),
    };

    private readonly ConcurrentDictionary<(string, string), bool> _running = new();

    public string CacheDir => options.Value.BuildCacheDir ?? Path.Combine(storage.Dir, ".base-cache");

    public async Task<Operation> BuildAsync(Caller caller, ImagesBuildBasePost? body, CancellationToken ct)
    {
        var (distro, type) = Validate(body);
        var exists = await db.ReadAsync(c => c.ExecuteScalar<long>(
            "SELECT COUNT(*) FROM images WHERE project = @system AND type = @type AND name = @distro",
            new { system = ImageService.SystemProject, type, distro }), ct);
        if (exists > 0)
            throw ProblemException.Conflict($"the {type} image '{distro}' is already built (see: kumo image show {distro})");
        if (!_running.TryAdd((distro, type), true))
            throw ProblemException.Conflict($"a build of the {type} image '{distro}' is already running");
        try
        {
            if (type == InstanceTypes.Container)
            {
                await InsertAsync(Ulid.NewUlid().ToString().ToLowerInvariant(), distro, type, ReadinessModes.None, Distros[distro].Container,
                    null, null, null, ct);
                var done = await operations.StartJobAsync(OperationKind, distro, ImageService.SystemProject, caller.UserId,
                    $"catalogued {distro} (container)", ct);
                await operations.FinishAsync(done.Id, true, $"image {distro} (container) is built on each node when a container first uses it", null, ct);
                _running.TryRemove((distro, type), out _);
                return await operations.GetAsync(done.Id, ct) ?? done;
            }
            var script = FindScript() ?? throw new InvalidOperationException($"scripts/{Script} not found; set KUMO_SCRIPTS_DIR");
            var op = await operations.StartJobAsync(OperationKind, distro, ImageService.SystemProject, caller.UserId,
                $"building {distro} (vm) from the Debian mirror", ct);
            var stopping = lifetime.ApplicationStopping;
            _ = Task.Run(() => BuildVmAsync(op.Id, distro, script, stopping), CancellationToken.None);
            return op;
        }
        catch
        {
            _running.TryRemove((distro, type), out _);
            throw;
        }
    }

    private static (string Distro, string Type) Validate(ImagesBuildBasePost? body)
    {
        var errors = new Dictionary<string, string[]>();
        var distro = body?.Distro ?? "";
        var type = string.IsNullOrEmpty(body?.Type) ? InstanceTypes.Vm : body.Type;
        if (!Distros.ContainsKey(distro))
            errors["distro"] = [$"Kumo cannot build '{distro}'; it builds: {string.Join(", ", Distros.Keys)}"];
        if (type is not (InstanceTypes.Vm or InstanceTypes.Container))
            errors["type"] = [$"type '{type}' is not vm or container"];
        if (errors.Count > 0) throw ProblemException.Validation(errors);
        return (distro, type);
    }

    private async Task BuildVmAsync(string opId, string distro, string script, CancellationToken ct)
    {
        var id = Ulid.NewUlid().ToString().ToLowerInvariant();
        var final = storage.PathOf(id);
        var stored = false;
        string? work = null;
        var clock = Stopwatch.StartNew();
        try
        {
            var key = Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(script, ct)))[..16];
            var cached = Path.Combine(CacheDir, $"{distro}-vm-{key}.qcow2");
            if (File.Exists(cached))
            {
                await operations.ProgressAsync(opId, $"using the cached build {Path.GetFileName(cached)}", ct);
            }
            else
            {
                Directory.CreateDirectory(CacheDir);
                await RunScriptAsync(opId, script, cached, clock, ct);
                LogBuilt(distro, clock.Elapsed.TotalSeconds);
            }
            work = storage.NewWorkDir();
            var copy = Path.Combine(work, "image.qcow2");
            await operations.ProgressAsync(opId, "storing the image and computing its SHA-256", ct);
            File.Copy(cached, copy);
            var info = await QemuImg.InfoAsync(copy, "qcow2", ct);
            var sha = await ImageStorage.Sha256Async(copy, ct);
            var size = new FileInfo(copy).Length;
            Directory.CreateDirectory(storage.Dir);
            File.Move(copy, final);
            stored = true;
            await InsertAsync(id, distro, InstanceTypes.Vm, ReadinessModes.Marker, Distros[distro].Vm, sha, size, info.VirtualSize, ct);
            await operations.FinishAsync(opId, true,
                $"image {distro} built in {clock.Elapsed.TotalSeconds:0} s ({ByteSize.Human(info.VirtualSize)} disk, sha256 {sha[..12]}…)", null, CancellationToken.None);
        }
        catch (Exception e)
        {
            if (stored) File.Delete(final);
            var why = ImageFailure.Why(e, distro);
            LogBuildFailed(distro, why);
            await ImageFailure.RecordAsync(operations, opId, "build failed", why, reason => LogBuildFailed(distro, reason));
        }
        finally
        {
            ImageStorage.DeleteQuietly(work);
            _running.TryRemove((distro, InstanceTypes.Vm), out _);
        }
    }

    /// <summary>Runs the build script; its step lines (and mmdebstrap's "I:" lines) become the operation's progress.</summary>
    private async Task RunScriptAsync(string opId, string script, string output, Stopwatch clock, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add("vm");
        psi.ArgumentList.Add(output);
        if (options.Value.DebianMirror is { } mirror) psi.Environment["DEBIAN_MIRROR"] = mirror;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start bash");
        p.StandardInput.Close();
        var tail = new Queue<string>();
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        try
        {
            while (await p.StandardError.ReadLineAsync(ct) is { } line)
            {
                tail.Enqueue(line);
                if (tail.Count > 5) tail.Dequeue();
                var step = line.StartsWith(ScriptPrefix, StringComparison.Ordinal) ? line[ScriptPrefix.Length..]
                    : line.StartsWith("I: ", StringComparison.Ordinal) ? "mmdebstrap: " + line[3..]
                    : null;
                if (step is not null)
                    await operations.ProgressAsync(opId, $"[{clock.Elapsed.TotalSeconds:0} s] {step}", ct);
            }
            await p.WaitForExitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        await stdout;
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{Script} failed (exit {p.ExitCode}): {string.Join(" | ", tail)}");
    }

    private Task<int> InsertAsync(string id, string name, string type, string readiness, string description, string? sha, long? size, long? virtualSize,
        CancellationToken ct) =>
        db.WriteAsync(ctx => ctx.Execute(
            """
            INSERT INTO images (id, name, project, type, readiness, description, built_in, created_at, owner_id, sha256, size_bytes, virtual_size_bytes, source_format)
            VALUES ($id, $name, $project, $type, $readiness, $description, 0, $now, NULL, $sha, $size, $virtual, 'mmdebstrap')
            """,
            ("$id", id), ("$name", name), ("$project", ImageService.SystemProject), ("$type", type), ("$readiness", readiness),
            ("$description", description), ("$now", Json.Now(time)), ("$sha", sha), ("$size", size), ("$virtual", virtualSize)), ct);

    /// <summary>KUMO_SCRIPTS_DIR, else the repo's scripts/ found by walking up from the binary (build output, artifacts/bin).</summary>
    private static string? FindScript()
    {
        if (Environment.GetEnvironmentVariable("KUMO_SCRIPTS_DIR") is { Length: > 0 } env && File.Exists(Path.Combine(env, Script)))
            return Path.Combine(env, Script);
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "scripts", Script);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    [LoggerMessage(LogLevel.Information, "base image {Distro} (vm) built in {Seconds:0} s")]
    private partial void LogBuilt(string distro, double seconds);

    [LoggerMessage(LogLevel.Warning, "build of base image {Distro} failed: {Reason}")]
    private partial void LogBuildFailed(string distro, string reason);
}
