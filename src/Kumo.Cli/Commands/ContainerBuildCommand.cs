using System.CommandLine;
using Kumo.Core;

namespace Kumo.Cli.Commands;

/// <summary>kumo ct build DIR -t NAME: the directory goes to kumod as a tar, a node builds it, its output comes back.</summary>
internal static class ContainerBuildCommand
{
    public static Command Create(CliContext cli)
    {
        var dir = new Argument<string>("DIR") { Description = "Build directory (the context): holds the Containerfile or Dockerfile and what it COPYs" };
        var tag = new Option<string>("--tag", "-t") { Description = "Image name (lowercase letters, digits and '-'; unique among your project's container images)", Required = true };
        var file = new Option<string?>("--file", "-f") { Description = "Build file inside DIR (default: Containerfile, else Dockerfile)", HelpName = "FILE" };
        var node = new Option<string?>("--node") { Description = "Build on this node (the image stays there, and so do its containers)" };
        var buildArgs = new Option<string[]>("--build-arg") { Description = "Value of the build file's ARG KEY (repeatable; KEY alone takes it from the environment)", HelpName = "KEY=VALUE" };
        var build = new Command("build", "Build a container image from a directory with a Containerfile/Dockerfile (FROM busybox, debian or an image of yours works offline)")
        {
            dir, tag, file, node, buildArgs,
        };
        cli.Examples(build, "kumo ct build ./web -t web", "kumo ct build . -t tool -f build/Containerfile --node node-2",
            "kumo ct build ./app -t app --build-arg VERSION=1.2");
        cli.SetAction(build, async run =>
        {
            var path = run.Get(dir);
            if (File.Exists(path)) throw new UsageException($"{path} is a file; give the build directory");
            if (!Directory.Exists(path)) throw new UsageException($"{path}: no such directory");
            var name = Check.Name(run.Get(tag), "image name");
            var dockerfile = run.Get(file);
            if (dockerfile is not null && BuildContexts.Normalize(dockerfile) is not { Length: > 0 })
                throw new UsageException($"-f {dockerfile}: give a path inside {path}");
            if (dockerfile is not null && !File.Exists(Path.Combine(path, dockerfile)))
                throw new UsageException($"{Path.Combine(path, dockerfile)}: no such file");
            if (dockerfile is null && !BuildContexts.DefaultFiles.Any(f => File.Exists(Path.Combine(path, f))))
                throw new UsageException($"{path} has no Containerfile or Dockerfile (name another build file with -f)");
            var args = (run.Get(buildArgs) ?? []).Select(a => a.Contains('=', StringComparison.Ordinal) ? a
                : Environment.GetEnvironmentVariable(a) is { } value ? $"{a}={value}"
                : throw new UsageException($"--build-arg {a}: give KEY=VALUE (or set {a} in the environment)")).ToList();
            if (args.FirstOrDefault(a => !System.Text.RegularExpressions.Regex.IsMatch(a[..a.IndexOf('=', StringComparison.Ordinal)], "^[A-Za-z_][A-Za-z0-9_]*$")) is { } badArg)
                throw new UsageException($"--build-arg {badArg} is not KEY=VALUE with KEY a variable name (letters, digits, '_')");

            var tar = Path.Combine(Path.GetTempPath(), $"kumo-build-{Guid.NewGuid():n}.tar");
            try
            {
                await BuildContextTar.WriteAsync(path, tar, run.Cancellation);
                await using var context = new FileStream(tar, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.DeleteOnClose);
                // Results go to stdout; in JSON/YAML mode the build's own output goes to stderr so stdout stays parseable.
                var log = run.Output.Format == OutputFormat.Table ? run.Environment.Out : run.Environment.Error;
                var image = await run.Client.BuildContainerImageAsync(name, context, run.Get(node), dockerfile,
                    text => { log.Write(text); log.Flush(); }, buildArgs: args, cancellationToken: run.Cancellation);
                run.Output.Write(image, i => Output.Line($"image {i.Name} built on {i.Node} (kumo ct run NAME --image {i.Name})"));
            }
            finally
            {
                File.Delete(tar);
            }
            return KumoCli.Ok;
        });
        return build;
    }
}
