using System.Diagnostics;

namespace Kumo.Agent.Containers;

/// <summary>
/// Pulls a registry image (HOST[:PORT]/PATH:TAG) into the node's engine with the podman CLI, which shares the
/// service's storage and, unlike the Docker-compatible API, takes --tls-verify per pull: an insecure registry is
/// allowed for that one pull only, never for the whole engine.
/// </summary>
public static class RegistryPulls
{
    /// <summary>
    /// Pulls <paramref name="reference"/> unless the engine has it, reporting podman's progress lines as they come.
    /// A failed pull leaves no image behind (podman commits an image only once every layer is in).
    /// </summary>
    public static async Task PullAsync(ContainerEngine engine, string reference, bool insecure, Func<string, Task> progress, CancellationToken ct)
    {
        if ((await engine.PodmanAsync(["image", "exists", reference], ct)).ExitCode == 0) return;
        var psi = new ProcessStartInfo("podman") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in engine.PodmanArgs()) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("pull");
        if (insecure) psi.ArgumentList.Add("--tls-verify=false");
        psi.ArgumentList.Add(reference);
        psi.Environment["CONTAINERS_CONF"] = engine.ConfigFile;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start podman");
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var lines = new List<string>();
        try
        {
            // Without a terminal podman writes one line per step ("Copying blob 4f4f... done", "Writing manifest to image destination").
            while (await p.StandardError.ReadLineAsync(ct) is { } line)
            {
                if (line.Trim() is not { Length: > 0 } text) continue;
                lines.Add(text);
                if (!text.StartsWith("Error:", StringComparison.Ordinal)) await progress(text);
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
        {
            var error = lines.LastOrDefault(l => l.StartsWith("Error:", StringComparison.Ordinal))?["Error:".Length..].Trim()
                ?? lines.LastOrDefault() ?? $"podman pull exited with code {p.ExitCode}";
            throw new InvalidOperationException($"pulling {reference} failed: {error}");
        }
    }
}
