using System.Text.Json;
using Dapper;
using Kumo.Core;
using Kumo.Protocol;
using Kumo.Server.Agents;
using Kumo.Server.Api;
using Kumo.Server.Consoles;
using Kumo.Server.Identity;
using Kumo.Server.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Kumo.Server.Images;

/// <summary>What POST /images/build asks for (from the query string; the body is the context, a tar).</summary>
public sealed record ContainerBuildRequest(string? Name, string? Node, string? Dockerfile, IReadOnlyList<string>? BuildArgs = null);

/// <summary>
/// kumo ct build: the build context is received and checked here first (size, entries that would escape the build
/// directory, a build file), so a bad one is a plain 4xx problem before any node sees it. Then the chosen node's
/// agent builds it in its engine over a console broker session, and its output streams back to the caller as
/// NDJSON lines: <c>{"stream":"..."}</c> while it builds, then <c>{"image":{...}}</c> or <c>{"error":"..."}</c>.
/// The image is recorded only after the engine has it, as a container image of the caller's project that lives on
/// that node (its containers are placed there).
/// </summary>
public sealed partial class ContainerImageBuilds(
    Database db, ConsoleBroker broker, NodeService nodes, ImageStorage storage, IOptions<ImageOptions> options, TimeProvider time,
    ILogger<ContainerImageBuilds> logger)
{
    private const int ChunkBytes = 256 * 1024;

    /// <summary>The engine reference of a built image: by id, so equal names in two projects never meet on a node.</summary>
    public static string EngineReference(string imageId) => $"localhost/kumo-{imageId}:latest";

    public async Task BuildAsync(HttpContext http, Caller caller, string project, ContainerBuildRequest req, CancellationToken ct)
    {
        if (Names.Validate(req.Name, "image name") is { } bad) throw ProblemException.Validation("name", bad);
        var name = req.Name!;
        var buildArgs = BuildArgs(req.BuildArgs);
        await EnsureNameFreeAsync(project, name, ct);
        var node = await PickNodeAsync(req.Node, ct);
        var max = options.Value.MaxBuildContextBytes;
        if (http.Request.ContentLength > max)
            throw TooLarge($"the build context is {ByteSize.Human(http.Request.ContentLength.Value)}; the limit is {ByteSize.Human(max)}");

        var work = storage.NewWorkDir();
        try
        {
            var tar = Path.Combine(work, "context.tar");
            await ReceiveAsync(http.Request.Body, tar, max, ct);
            string dockerfile;
            await using (var check = File.OpenRead(tar))
            {
                try
                {
                    dockerfile = await BuildContexts.CheckAsync(check, req.Dockerfile, ct);
                }
                catch (InvalidDataException e)
                {
                    throw new ProblemException(400, ProblemTypes.BuildContextRejected, "The build context was refused", e.Message);
                }
            }
            // FROM the project's own built image: the build runs where that image is, on its engine reference.
            var (rewritten, baseNodeId) = await ResolveBaseImagesAsync(tar, dockerfile, project, ct);
            if (rewritten is not null)
            {
                var replaced = Path.Combine(work, "context-resolved.tar");
                await BuildFiles.ReplaceMemberAsync(tar, dockerfile, rewritten, replaced, ct);
                tar = replaced;
            }
            if (baseNodeId is not null && baseNodeId != node.Id)
            {
                var baseNode = (await nodes.ListAsync(ct)).FirstOrDefault(n => n.Id == baseNodeId)?.Name ?? baseNodeId;
                if (req.Node is not null)
                    throw ProblemException.Validation("node", $"the build file builds on an image that is on node {baseNode}; build there (leave --node out)");
                node = await PickNodeAsync(baseNode, ct);
            }

            var id = Ulid.NewUlid().ToString().ToLowerInvariant();
            var reference = EngineReference(id);
            var link = await broker.OpenAsync(node.Id, node.Name, new ConsoleSessionRequest
            {
                ContainerKind = "build",
                BuildReference = reference,
                BuildDockerfile = dockerfile,
                BuildMaxBytes = max,
                BuildArgs = { buildArgs },
            }, ct);
            try
            {
                if (link.Refusal is { } refusal)
                    throw ProblemException.InvalidState($"node {node.Name} cannot build: {refusal}");
                await SendContextAsync(link, tar, ct);
                LogBuilding(name, project, node.Name, reference);
                await RelayAsync(http, link, caller, project, name, id, node, ct);
            }
            finally
            {
                link.Close();
            }
        }
        finally
        {
            ImageStorage.DeleteQuietly(work);
        }
    }

    /// <summary>Removes a built image from the engine of the node that has it; false when that node cannot be reached now.</summary>
    public async Task<bool> RemoveFromNodeAsync(string imageId, string nodeId, CancellationToken ct)
    {
        var nodeName = (await nodes.ListAsync(ct)).FirstOrDefault(n => n.Id == nodeId)?.Name ?? nodeId;
        if (!broker.IsConnected(nodeId))
        {
            LogLeftOnNode(imageId, nodeName, "the node is not connected");
            return false;
        }
        try
        {
            var link = await broker.OpenAsync(nodeId, nodeName, new ConsoleSessionRequest
            {
                ContainerKind = "remove_image",
                BuildReference = EngineReference(imageId),
            }, ct);
            try
            {
                await foreach (var frame in link.FromAgent.ReadAllAsync(ct))
                {
                    if (!string.IsNullOrEmpty(frame.Error))
                    {
                        LogLeftOnNode(imageId, nodeName, frame.Error);
                        return false;
                    }
                    if (frame.Exited) return true;
                }
                return false;
            }
            finally
            {
                link.Close();
            }
        }
        catch (ProblemException e)
        {
            LogLeftOnNode(imageId, nodeName, e.Detail ?? e.Title);
            return false;
        }
    }

    private async Task EnsureNameFreeAsync(string project, string name, CancellationToken ct)
    {
        var taken = await db.ReadAsync(c => c.QueryFirstOrDefault<string?>(
            "SELECT project FROM images WHERE project IN (@project, @system) AND type = @type AND name = @name",
            new { project, system = ImageService.SystemProject, type = InstanceTypes.Container, name }), ct);
        if (taken == ImageService.SystemProject)
            throw ProblemException.Conflict($"'{name}' is a built-in image; give your image another name");
        if (taken is not null)
            throw ProblemException.Conflict($"a container image named '{name}' already exists (kumo image rm {name} --type container first)");
    }

    public const int MaxBuildArgs = 64;

    /// <summary>KEY=VALUE build arguments (the build file's ARG), checked: a variable name, a printable value.</summary>
    private static Dictionary<string, string> BuildArgs(IReadOnlyList<string>? args)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (args is null) return result;
        if (args.Count > MaxBuildArgs) throw ProblemException.Validation("buildArg", $"at most {MaxBuildArgs} build arguments");
        foreach (var arg in args)
        {
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            var key = eq < 0 ? arg : arg[..eq];
            if (eq < 0 || !BuildArgName().IsMatch(key))
                throw ProblemException.Validation("buildArg", $"build argument '{(arg.Length > 40 ? arg[..40] + "…" : arg)}' is not KEY=VALUE with KEY a variable name (letters, digits, '_')");
            var value = arg[(eq + 1)..];
            if (value.Length > 4096 || value.Any(char.IsControl))
                throw ProblemException.Validation("buildArg", $"build argument {key}: the value must be at most 4096 printable characters");
            result[key] = value;
        }
        return result;
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
    private static partial System.Text.RegularExpressions.Regex BuildArgName();

    /// <summary>
    /// Resolves the images the build file builds on through the project: its own built images become their engine
    /// references (and the node that holds them), the node's base images and registry images stay as written, and
    /// anything else (another project's image, the node's image store by reference or id) is refused.
    /// </summary>
    private async Task<(string? Rewritten, string? NodeId)> ResolveBaseImagesAsync(string tar, string dockerfile, string project, CancellationToken ct)
    {
        var text = await BuildFiles.ReadMemberAsync(tar, dockerfile, ct) ?? "";
        var images = await db.ReadAsync(c => c.Query<ImageRow>(
            "SELECT * FROM images WHERE project IN (@project, @default, 'system') AND type = 'container' ORDER BY project = 'system', project = @default",
            new { project, @default = Instances.InstanceService.DefaultProject }).GroupBy(i => i.Name).ToDictionary(g => g.Key, g => g.First()), ct);
        var nodeIds = new HashSet<string>(StringComparer.Ordinal);
        string? Resolve(string written)
        {
            var image = written.EndsWith(":latest", StringComparison.Ordinal) ? written[..^":latest".Length] : written;
            if (image is "localhost/busybox" or "localhost/debian" or "busybox" or "debian" or "scratch") return null;
            if (RegistryReferences.IsReference(image))
            {
                if (RegistryReferences.Validate(image) is { } error) throw new InvalidDataException($"FROM {written}: {error}");
                return null;
            }
            if (images.TryGetValue(image, out var row))
            {
                if (row.NodeId is null) return null;
                nodeIds.Add(row.NodeId);
                return EngineReference(row.Id);
            }
            throw new InvalidDataException($"FROM {written}: there is no container image '{image}' in project {project} (see: kumo image list --type container)");
        }
        string rewritten;
        try
        {
            rewritten = BuildFiles.RewriteImages(text, Resolve);
        }
        catch (InvalidDataException e)
        {
            throw new ProblemException(400, ProblemTypes.BuildContextRejected, "The build file was refused", e.Message);
        }
        if (nodeIds.Count > 1)
            throw new ProblemException(400, ProblemTypes.BuildContextRejected, "The build file was refused",
                "the build file builds on images that were built on different nodes; an image and its bases must be on one node");
        return (rewritten == text ? null : rewritten, nodeIds.FirstOrDefault());
    }

    /// <summary>The node asked for, or the ready, connected node with the fewest instances.</summary>
    private async Task<Node> PickNodeAsync(string? wanted, CancellationToken ct)
    {
        var all = await nodes.ListAsync(ct);
        if (wanted is not null)
        {
            var node = all.FirstOrDefault(n => n.Name == wanted)
                ?? throw ProblemException.Validation("node", $"node '{wanted}' does not exist (see: kumo node list)");
            if (node.State != NodeStates.Ready || !broker.IsConnected(node.Id)) throw ConsoleBroker.Unavailable(node.Name);
            return node;
        }
        return all.Where(n => n.State == NodeStates.Ready && broker.IsConnected(n.Id)).OrderBy(n => n.Instances).ThenBy(n => n.Name, StringComparer.Ordinal)
            .FirstOrDefault()
            ?? throw new ProblemException(503, ProblemTypes.NodeUnavailable, "No node can build now", "no ready node is connected to kumod (kumo node list)");
    }

    private static async Task ReceiveAsync(Stream body, string path, long max, CancellationToken ct)
    {
        await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        var buffer = new byte[1 << 16];
        long total = 0;
        int n;
        try
        {
            while ((n = await body.ReadAsync(buffer, ct)) > 0)
            {
                total += n;
                if (total > max) throw TooLarge($"the build context is larger than the limit ({ByteSize.Human(max)}); leave files out with .dockerignore");
                await file.WriteAsync(buffer.AsMemory(0, n), ct);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == 413)
        {
            throw TooLarge($"the build context is larger than the limit ({ByteSize.Human(max)}); leave files out with .dockerignore");
        }
        if (total == 0)
            throw new ProblemException(400, ProblemTypes.BuildContextRejected, "The build context was refused", "the build context is empty (send a tar of the build directory)");
    }

    private static async Task SendContextAsync(ConsoleLink link, string tar, CancellationToken ct)
    {
        await using var file = File.OpenRead(tar);
        var buffer = new byte[ChunkBytes];
        int n;
        while ((n = await file.ReadAsync(buffer, ct)) > 0)
            await link.SendAsync(buffer.AsMemory(0, n), ct);
        await link.CloseInputAsync(ct);
    }

    /// <summary>Streams the agent's output to the caller and records the image once the agent says it is built.</summary>
    private async Task RelayAsync(HttpContext http, ConsoleLink link, Caller caller, string project, string name, string id, Node node,
        CancellationToken ct)
    {
        http.Response.ContentType = "application/x-ndjson";
        http.Features.Get<IHttpResponseBodyFeature>()!.DisableBuffering();
        await http.Response.StartAsync(ct);
        await foreach (var frame in link.FromAgent.ReadAllAsync(ct))
        {
            if (!frame.Data.IsEmpty) await WriteLineAsync(http, new { stream = frame.Data.ToStringUtf8() }, ct);
            if (!string.IsNullOrEmpty(frame.Error))
            {
                LogFailed(name, project, node.Name, frame.Error);
                await WriteLineAsync(http, new { error = frame.Error }, ct);
                return;
            }
            if (frame.Exited)
            {
                var image = await RecordAsync(caller, project, name, id, node, frame, ct);
                if (image is null)
                {
                    await RemoveFromNodeAsync(id, node.Id, CancellationToken.None);
                    await WriteLineAsync(http, new { error = $"a container image named '{name}' was created meanwhile" }, ct);
                    return;
                }
                LogBuilt(name, project, node.Name, frame.BuiltImageId);
                await WriteLineAsync(http, new { image }, ct);
                return;
            }
        }
        await WriteLineAsync(http, new { error = $"node {node.Name} went away before the build ended" }, ct);
    }

    private async Task<Image?> RecordAsync(Caller caller, string project, string name, string id, Node node, ConsoleFrame built, CancellationToken ct)
    {
        try
        {
            await db.WriteAsync(ctx => ctx.Execute(
                """
                INSERT INTO images (id, name, project, type, readiness, description, built_in, created_at, owner_id, size_bytes, node_id)
                VALUES ($id, $name, $project, $type, $readiness, $description, 0, $now, $owner, $size, $node)
                """,
                ("$id", id), ("$name", name), ("$project", project), ("$type", InstanceTypes.Container), ("$readiness", ReadinessModes.None),
                ("$description", $"built with kumo ct build on {node.Name} ({built.BuiltImageId})"), ("$now", Json.Now(time)),
                ("$owner", caller.UserId), ("$size", built.BuiltSizeBytes), ("$node", node.Id)), ct);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            return null;
        }
        return (await db.ReadAsync(c => c.QuerySingle<ImageRow>(
            "SELECT m.*, n.name AS node_name FROM images m LEFT JOIN nodes n ON n.id = m.node_id WHERE m.id = @id", new { id }), ct)).ToApi();
    }

    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    private static async Task WriteLineAsync(HttpContext http, object line, CancellationToken ct)
    {
        await http.Response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(line, Web), ct);
        await http.Response.Body.WriteAsync("\n"u8.ToArray(), ct);
        await http.Response.Body.FlushAsync(ct);
    }

    private static ProblemException TooLarge(string detail) =>
        new(413, ProblemTypes.BuildContextTooLarge, "The build context is too large", detail);

    [LoggerMessage(LogLevel.Information, "image build: {Name} in project {Project} on node {Node} as {Reference}")]
    private partial void LogBuilding(string name, string project, string node, string reference);

    [LoggerMessage(LogLevel.Information, "image build: {Name} in project {Project} built on node {Node} ({EngineId})")]
    private partial void LogBuilt(string name, string project, string node, string engineId);

    [LoggerMessage(LogLevel.Information, "image build: {Name} in project {Project} failed on node {Node}: {Error}")]
    private partial void LogFailed(string name, string project, string node, string error);

    [LoggerMessage(LogLevel.Warning, "image {Id} stays in the engine of node {Node}: {Reason}")]
    private partial void LogLeftOnNode(string id, string node, string reason);
}
