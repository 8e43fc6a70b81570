using System.Text;
using System.Threading.Channels;
using Docker.DotNet;
using Docker.DotNet.Models;
using Google.Protobuf;
using Grpc.Core;
using Kumo.Core;
using Kumo.Protocol;
using Microsoft.Extensions.Logging;

namespace Kumo.Agent.Containers;

/// <summary>
/// Image builds (kumo ct build) and removals, asked for by kumod as sessions on the console broker's calls: kumod
/// streams the build context in, the agent feeds it to the engine's build API and streams the engine's output back.
/// RUN steps run under the same runtime and lowered ulimits as containers, because the build runs inside the
/// agent's podman service and so reads its containers.conf.
/// </summary>
public sealed partial class ContainerBuilds(ContainerEngine engine, ILogger<ContainerBuilds> logger)
{
    public const string Build = "build";
    public const string RemoveImage = "remove_image";

    /// <summary>Only images kumod built may be replaced or removed this way, never the base images.</summary>
    public const string ReferencePrefix = "localhost/kumo-";

    private const int ChunkBytes = 32 * 1024;

    public static bool Serves(string kind) => kind is Build or RemoveImage;

    public async Task ServeAsync(ConsoleSessionRequest request, SessionCall call, CancellationToken ct)
    {
        if (!request.BuildReference.StartsWith(ReferencePrefix, StringComparison.Ordinal))
        {
            await call.SendAsync(new ConsoleFrame { NodeId = call.NodeId, SessionId = request.SessionId, Error = $"'{request.BuildReference}' is not an image kumod builds" });
            await call.ToKumod.CompleteAsync();
            return;
        }
        await call.SendAsync(new ConsoleFrame { NodeId = call.NodeId, SessionId = request.SessionId });
        try
        {
            if (request.ContainerKind == Build) await BuildAsync(request, call, ct);
            else await RemoveAsync(request, call, ct);
        }
        catch (Exception e) when (e is DockerApiException or HttpRequestException or IOException or InvalidOperationException && !ct.IsCancellationRequested)
        {
            await call.SendAsync(new ConsoleFrame { Error = e is DockerApiException d ? $"container engine: {d.ResponseBody.Trim()}" : e.Message });
        }
        await call.ToKumod.CompleteAsync();
        // kumod ends the call once it has relayed everything; ending it here could cut the last frames off.
        try
        {
            while (await call.FromKumod.MoveNext(ct)) { }
        }
        catch (Exception e) when (e is OperationCanceledException or RpcException or IOException)
        {
        }
    }

    private async Task RemoveAsync(ConsoleSessionRequest request, SessionCall call, CancellationToken ct)
    {
        var client = await engine.ClientAsync(ct);
        try
        {
            // Forced: a container kumod no longer knows (its instance is gone) may still hold it until the next pass.
            await client.Images.DeleteImageAsync(request.BuildReference, new ImageDeleteParameters { Force = true }, ct);
            LogRemoved(request.BuildReference);
        }
        catch (DockerImageNotFoundException)
        {
        }
        catch (DockerApiException e) when (e.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
        }
        await call.SendAsync(new ConsoleFrame { Exited = true, ExitCode = 0 });
    }

    private async Task BuildAsync(ConsoleSessionRequest request, SessionCall call, CancellationToken ct)
    {
        var work = Path.Combine(engine.Dir, "tmp");
        Directory.CreateDirectory(work);
        var tar = Path.Combine(work, $"build-{Guid.NewGuid():n}.tar");
        try
        {
            if (await ReceiveAsync(call.FromKumod, tar, request.BuildMaxBytes, ct) is { } tooLarge)
            {
                await call.SendAsync(new ConsoleFrame { Error = tooLarge });
                return;
            }
            string dockerfile;
            await using (var check = File.OpenRead(tar))
            {
                try
                {
                    dockerfile = await BuildContexts.CheckAsync(check, request.BuildDockerfile.Length > 0 ? request.BuildDockerfile : null, ct);
                }
                catch (InvalidDataException e)
                {
                    await call.SendAsync(new ConsoleFrame { Error = e.Message });
                    return;
                }
            }
            // The service writes the containers.conf the podman CLI (busybox import) reads: start it first.
            var client = await engine.ClientAsync(ct);
            // FROM busybox must resolve locally: no registry is reachable.
            await BaseImages.EnsureBusyboxAsync(engine, ct);
            // So must FROM debian, which this node builds with mmdebstrap the first time something uses it.
            if (BaseImages.NamesDebian(await BaseImages.ReadMemberAsync(tar, dockerfile, ct)))
            {
                // Said only when it is really made: a node that has it starts the build at once.
                if ((await engine.PodmanAsync(["image", "exists", BaseImages.DebianReference], ct)).ExitCode != 0)
                {
                    await call.SendAsync(new ConsoleFrame
                    {
                        Data = ByteString.CopyFromUtf8("preparing the debian base image on this node (mmdebstrap on first use, minutes)\n"),
                        Stream = 1,
                    });
                }
                await BaseImages.EnsureDebianAsync(engine, ct);
            }
            LogBuilding(request.BuildReference, dockerfile);
            var messages = Channel.CreateUnbounded<JSONMessage>(new UnboundedChannelOptions { SingleReader = true });
            string? error = null;
            var relay = Task.Run(async () =>
            {
                await foreach (var m in messages.Reader.ReadAllAsync(CancellationToken.None))
                {
                    var text = m.Stream ?? m.Status;
                    if (!string.IsNullOrEmpty(text))
                    {
                        var bytes = Encoding.UTF8.GetBytes(text);
                        for (var at = 0; at < bytes.Length; at += ChunkBytes)
                            await call.SendAsync(new ConsoleFrame { Data = ByteString.CopyFrom(bytes, at, Math.Min(ChunkBytes, bytes.Length - at)), Stream = 1 });
                    }
                    var failed = m.Error?.Message ?? m.ErrorMessage;
                    if (!string.IsNullOrEmpty(failed)) error = failed.Trim();
                }
            }, CancellationToken.None);
            try
            {
                await using var context = File.OpenRead(tar);
                await client.Images.BuildImageFromDockerfileAsync(new ImageBuildParameters
                {
                    Dockerfile = dockerfile,
                    Tags = [request.BuildReference],
                    BuildArgs = request.BuildArgs.Count > 0 ? request.BuildArgs.ToDictionary(a => a.Key, a => a.Value) : null,
                    // Intermediate containers go even when a step fails; the layers before it stay as build cache.
                    Remove = true,
                    ForceRemove = true,
                }, context, null, null, new Sink(messages.Writer), ct);
            }
            finally
            {
                messages.Writer.TryComplete();
                await relay;
            }
            if (error is not null)
            {
                await call.SendAsync(new ConsoleFrame { Error = error });
                return;
            }
            var image = await client.Images.InspectImageAsync(request.BuildReference, ct);
            LogBuilt(request.BuildReference, image.ID);
            await call.SendAsync(new ConsoleFrame { Exited = true, ExitCode = 0, BuiltImageId = image.ID, BuiltSizeBytes = image.Size });
        }
        finally
        {
            File.Delete(tar);
        }
    }

    /// <summary>Writes kumod's data frames to <paramref name="path"/> until it closes its input; a message when over the limit.</summary>
    private static async Task<string?> ReceiveAsync(IAsyncStreamReader<ConsoleFrame> fromKumod, string path, long max, CancellationToken ct)
    {
        await using var file = File.Create(path);
        long total = 0;
        while (await fromKumod.MoveNext(ct))
        {
            var frame = fromKumod.Current;
            total += frame.Data.Length;
            if (max > 0 && total > max)
                return $"the build context is larger than the node accepts ({ByteSize.Human(max)})";
            if (!frame.Data.IsEmpty) await file.WriteAsync(frame.Data.Memory, ct);
            if (frame.CloseInput) return null;
        }
        throw new IOException("kumod ended the build before sending the whole context");
    }

    /// <summary>Hands the engine's messages over in order (Progress&lt;T&gt; would post them to the thread pool unordered).</summary>
    private sealed class Sink(ChannelWriter<JSONMessage> writer) : IProgress<JSONMessage>
    {
        public void Report(JSONMessage value) => writer.TryWrite(value);
    }

    [LoggerMessage(LogLevel.Information, "container build: building {Reference} from {Dockerfile}")]
    private partial void LogBuilding(string reference, string dockerfile);

    [LoggerMessage(LogLevel.Information, "container build: built {Reference} as {Id}")]
    private partial void LogBuilt(string reference, string id);

    [LoggerMessage(LogLevel.Information, "container build: removed image {Reference}")]
    private partial void LogRemoved(string reference);
}
