using System.Globalization;

namespace Kumo.Bench;

/// <summary>Command line: [--only NAME] [--runs N].</summary>
internal sealed record BenchOptions(string? Only, int Runs)
{
    public const string Usage = """
        usage: dotnet run -c Release --project bench/Kumo.Bench -- [--only NAME] [--runs N]
          --only NAME   run one benchmark: boot, api, aaa, placement, memory, proxy, containers, network or cluster (default: all)
          --runs N      boots per side in the boot benchmark, alternating bare/kumo (default 5)
        """;

    public static BenchOptions? Parse(string[] args, out string? error)
    {
        string? only = null;
        var runs = 5;
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--only" when value is not null:
                    only = value;
                    i++;
                    break;
                case "--runs" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out runs) && runs >= 1:
                    i++;
                    break;
                case "-h" or "--help":
                    error = "help requested";
                    return null;
                default:
                    error = $"cannot parse '{args[i]}{(value is null ? "" : " " + value)}'";
                    return null;
            }
        }
        error = null;
        return new BenchOptions(only, runs);
    }
}
