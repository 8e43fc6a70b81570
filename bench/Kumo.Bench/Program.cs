using System.Diagnostics;
using System.Runtime.InteropServices;
using Kumo.Bench;

var options = BenchOptions.Parse(args, out var error);
if (options is null)
{
    await Console.Error.WriteLineAsync($"error: {error}\n\n{BenchOptions.Usage}");
    return 2;
}

var benchmarks = new (string Name, Func<BenchOptions, CancellationToken, Task<BenchResult>> Run)[]
{
    (BootBench.Name, BootBench.RunAsync),
    (ApiBench.Name, ApiBench.RunAsync),
    (AaaBench.Name, AaaBench.RunAsync),
    (PlacementBench.Name, PlacementBench.RunAsync),
    (MemoryBench.Name, MemoryBench.RunAsync),
    (ProxyBench.Name, ProxyBench.RunAsync),
    (ContainerBench.Name, ContainerBench.RunAsync),
    (NetworkBench.Name, NetworkBench.RunAsync),
    (ClusterBench.Name, ClusterBench.RunAsync),
    (MigrationBench.Name, MigrationBench.RunAsync),
    (ImportBench.Name, ImportBench.RunAsync),
};
if (options.Only is { } only && benchmarks.All(b => b.Name != only))
{
    await Console.Error.WriteLineAsync($"error: unknown benchmark '{only}'; choose one of {string.Join(", ", benchmarks.Select(b => b.Name))}");
    return 2;
}

// Ctrl+C or kill: cancel instead of dying, so every kumod and QEMU started so far is cleaned up on the way out.
using var cts = new CancellationTokenSource();
void Interrupt(PosixSignalContext signal)
{
    signal.Cancel = true;
    cts.Cancel();
}
using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Interrupt);
using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Interrupt);

var results = new List<BenchResult>();
var failed = false;
var total = Stopwatch.StartNew();
var loadBefore = ResultsPrinter.LoadAverage();
foreach (var (name, run) in benchmarks.Where(b => options.Only is null || b.Name == options.Only))
{
    await Console.Error.WriteLineAsync($"[bench] {name} ...");
    var sw = Stopwatch.StartNew();
    try
    {
        results.Add(await run(options, cts.Token));
    }
    catch (OperationCanceledException) when (cts.IsCancellationRequested)
    {
        await Console.Error.WriteLineAsync($"[bench] interrupted during {name}; cleaned up, no results written");
        return 130;
    }
    catch (Exception e)
    {
        failed = true;
        results.Add(new BenchResult(name, "") { Skipped = $"FAILED: {e.GetType().Name}: {e.Message}" });
    }
    await Console.Error.WriteLineAsync($"[bench] {name} done in {sw.Elapsed.TotalSeconds:0.0} s");
}

Console.Write(ResultsPrinter.Table(results));
var json = Path.Combine(Repo.Root, "bench", "results", "latest.json");
await ResultsPrinter.WriteJsonAsync(json, options, results, total.Elapsed, loadBefore);
Console.WriteLine($"{Environment.ProcessorCount} cores, load average {loadBefore} before / {ResultsPrinter.LoadAverage()} after; "
    + $"wrote {Path.GetRelativePath(Environment.CurrentDirectory, json)} ({total.Elapsed.TotalSeconds:0} s in all)");
return failed ? 1 : 0;
