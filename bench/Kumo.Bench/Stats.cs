namespace Kumo.Bench;

/// <summary>Order statistics over samples.</summary>
internal static class Stats
{
    public static double Median(IReadOnlyCollection<double> samples) => Percentile(samples, 50);

    /// <summary>Nearest-rank percentile (p in 0..100).</summary>
    public static double Percentile(IReadOnlyCollection<double> samples, double p)
    {
        if (samples.Count == 0) return double.NaN;
        var sorted = samples.Order().ToArray();
        if (p == 50 && sorted.Length % 2 == 0) return (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
        var rank = (int)Math.Ceiling(p / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
