using System.Globalization;
using System.Runtime.InteropServices;

namespace Dispatcher.SampleHost.Sysadm;

/// <summary>Reads what <c>sysadm/systemmanager</c> reports from Linux's /proc (the sysadm server read the same from FreeBSD's sysctls).</summary>
internal static class ProcFs
{
    /// <summary>/proc/meminfo in KiB, by field name.</summary>
    public static Dictionary<string, long> MemInfo(string path = "/proc/meminfo")
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines(path))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                continue;
            }

            var value = line[(colon + 1)..].Trim();
            var space = value.IndexOf(' ', StringComparison.Ordinal);
            if (long.TryParse(space < 0 ? value : value[..space], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kib))
            {
                result[line[..colon]] = kib;
            }
        }

        return result;
    }

    /// <summary>The per-CPU lines of /proc/stat: busy and total jiffies of each CPU, in order.</summary>
    public static (long Busy, long Total)[] CpuTimes(string path = "/proc/stat")
    {
        var cpus = new List<(long, long)>();
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith("cpu", StringComparison.Ordinal) || line.Length < 4 || !char.IsDigit(line[3]))
            {
                continue;
            }

            // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                .Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
            var total = fields.Take(8).Sum();
            var idle = fields[3] + (fields.Length > 4 ? fields[4] : 0);
            cpus.Add((total - idle, total));
        }

        return [.. cpus];
    }

    public static TimeSpan Uptime(string path = "/proc/uptime") =>
        TimeSpan.FromSeconds(double.Parse(File.ReadAllText(path).Split(' ')[0], CultureInfo.InvariantCulture));

    public static string CpuType(string path = "/proc/cpuinfo")
    {
        foreach (var line in File.ReadLines(path))
        {
            if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
            {
                return line[(colon + 1)..].Trim();
            }
        }

        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    public static string Kernel(string name) => File.Exists("/proc/sys/kernel/" + name) ? File.ReadAllText("/proc/sys/kernel/" + name).Trim() : string.Empty;

    /// <summary>The machine architecture, in the names FreeBSD's <c>uname -p</c> used (amd64, arm64, i386).</summary>
    public static string Architecture() => RuntimeInformation.OSArchitecture switch
    {
        System.Runtime.InteropServices.Architecture.X64 => "amd64",
        System.Runtime.InteropServices.Architecture.Arm64 => "arm64",
        System.Runtime.InteropServices.Architecture.X86 => "i386",
        var other => other.ToString().ToLowerInvariant(),
    };

    /// <summary>The uptime as <c>uptime(1)</c> words it: <c>up 2 days, 5:09</c>.</summary>
    public static string UptimeText(TimeSpan up) => up.Days switch
    {
        0 => string.Create(CultureInfo.InvariantCulture, $"up {up.Hours}:{up.Minutes:00}"),
        1 => string.Create(CultureInfo.InvariantCulture, $"up 1 day, {up.Hours}:{up.Minutes:00}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"up {up.Days} days, {up.Hours}:{up.Minutes:00}"),
    };
}
