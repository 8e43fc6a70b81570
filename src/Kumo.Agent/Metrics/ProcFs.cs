using System.Globalization;

namespace Kumo.Agent.Metrics;

/// <summary>Parsers for the procfs files the samplers read; pure functions over their text, so tests feed them fixtures.</summary>
public static class ProcFs
{
    /// <summary>
    /// Clock ticks per second in /proc: the kernel's USER_HZ, which is 100 on every architecture Linux exports to
    /// user space as such (CONFIG_HZ does not change it).
    /// </summary>
    public const double TicksPerSecond = 100;

    public sealed record CpuTimes(double BusySeconds, double IdleSeconds, int Cpus);

    /// <summary>The aggregate "cpu" line of /proc/stat: idle = idle + iowait; busy = everything else except guest time.</summary>
    /// <remarks>guest and guest_nice are already counted in user and nice, so adding them would count them twice.</remarks>
    public static CpuTimes ParseStat(string text)
    {
        double busy = 0, idle = 0;
        var cpus = 0;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("cpu ", StringComparison.Ordinal))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(ParseLong).ToArray();
                // user nice system idle iowait irq softirq steal guest guest_nice
                for (var i = 0; i < Math.Min(f.Length, 8); i++)
                {
                    if (i is 3 or 4) idle += f[i];
                    else busy += f[i];
                }
            }
            else if (line.StartsWith("cpu", StringComparison.Ordinal) && line.Length > 3 && char.IsAsciiDigit(line[3]))
            {
                cpus++;
            }
        }
        return new CpuTimes(busy / TicksPerSecond, idle / TicksPerSecond, cpus);
    }

    /// <summary>MemTotal and MemAvailable of /proc/meminfo, in bytes.</summary>
    public static (long Total, long Available) ParseMeminfo(string text)
    {
        long total = 0, available = 0;
        foreach (var line in text.Split('\n'))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 2) continue;
            if (parts[0] == "MemTotal:") total = ParseLong(parts[1]) * 1024;
            else if (parts[0] == "MemAvailable:") available = ParseLong(parts[1]) * 1024;
        }
        return (total, available);
    }

    /// <summary>Received and transmitted bytes per interface, from /proc/net/dev.</summary>
    public static IReadOnlyDictionary<string, (long Rx, long Tx)> ParseNetDev(string text)
    {
        var result = new Dictionary<string, (long, long)>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0) continue;
            var name = line[..colon].Trim();
            var f = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes ...
            if (f.Length < 9) continue;
            result[name] = (ParseLong(f[0]), ParseLong(f[8]));
        }
        return result;
    }

    public sealed record ProcessTimes(double CpuSeconds, long StartTicks);

    /// <summary>utime + stime and the start time (ticks after boot) of /proc/PID/stat.</summary>
    /// <remarks>The command name in parentheses may hold spaces and parentheses: fields are counted after the last ')'.</remarks>
    public static ProcessTimes ParsePidStat(string text)
    {
        var rest = text[(text.LastIndexOf(')') + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // rest[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
        var utime = ParseLong(rest[11]);
        var stime = ParseLong(rest[12]);
        var start = ParseLong(rest[19]);
        return new ProcessTimes((utime + stime) / TicksPerSecond, start);
    }

    /// <summary>Resident pages (second field) of /proc/PID/statm, in bytes.</summary>
    public static long ParseStatmResident(string text, long pageSize) =>
        ParseLong(text.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * pageSize;

    /// <summary>The tap interface behind a /dev/net/tun descriptor, from its /proc/PID/fdinfo entry ("iff:\tNAME").</summary>
    public static string? ParseTunInterface(string fdinfo)
    {
        foreach (var line in fdinfo.Split('\n'))
        {
            if (line.StartsWith("iff:", StringComparison.Ordinal)) return line[4..].Trim();
        }
        return null;
    }

    private static long ParseLong(string s) => long.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture);
}
