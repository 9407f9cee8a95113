using System.Diagnostics;
using System.Globalization;
using System.Text;
using Dispatcher.Events;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Benchmarks;

/// <summary>A dispatcher built the way a host builds it, without logging noise.</summary>
internal sealed class BenchDispatcher : IAsyncDisposable
{
    private readonly ServiceProvider _provider;

    public BenchDispatcher(Action<DispatcherOptions>? configure = null, Action<IDispatcherBuilder>? builder = null)
    {
        var services = new ServiceCollection();
        services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        var b = services.AddDispatcher(o =>
        {
            o.RetainedJobCount = 100_000;
            o.EventBufferCapacity = 100_000;
            configure?.Invoke(o);
        });
        builder?.Invoke(b);
        _provider = services.BuildServiceProvider();
        Dispatcher = _provider.GetRequiredService<IDispatcher>();
    }

    public IDispatcher Dispatcher { get; }

    public ValueTask DisposeAsync() => _provider.DisposeAsync();
}

/// <summary>Medians, percentiles and the report file.</summary>
internal static class Stats
{
    public static double Median(IEnumerable<double> values) => Percentile(values, 50);

    public static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        var rank = p / 100 * (sorted.Length - 1);
        var lo = (int)Math.Floor(rank);
        var hi = (int)Math.Ceiling(rank);
        return sorted[lo] + ((sorted[hi] - sorted[lo]) * (rank - lo));
    }

    public static string F(double value, int decimals = 1) => value.ToString("F" + decimals, CultureInfo.InvariantCulture);
}

internal sealed class Report
{
    private readonly string _loadAtStart = Load();
    private readonly List<(string Figure, string Result, string Baseline, string Ratio, string Target, string Verdict, string Note)> _rows = [];

    public void Add(string figure, string result, string baseline, string ratio, string target, bool? met, string note = "")
    {
        _rows.Add((figure, result, baseline, ratio, target, met switch { true => "met", false => "**missed**", null => "reported" }, note));
        Console.WriteLine($"{figure}: {result} | baseline {baseline} | {ratio} | target {target} | {(met is null ? "reported" : met.Value ? "met" : "MISSED")} {note}");
    }

    public string ToMarkdown(string command, TimeSpan elapsed)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Benchmark results");
        sb.AppendLine();
        sb.AppendLine("Written by the benchmark runner; do not edit by hand (the analysis below the table is kept in `ANALYSIS.md`).");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"* Date: {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC; run took {elapsed.TotalMinutes:F1} min");
        sb.AppendLine(CultureInfo.InvariantCulture, $"* Command: `{command}`");
        sb.AppendLine(CultureInfo.InvariantCulture, $"* Machine: {Environment.ProcessorCount} cores ({Cpu()}), {Memory()}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"* Load average (1, 5, 15 min) at the start: {_loadAtStart}; at the end: {Load()}");
        sb.AppendLine("* Every comparison runs both sides in this same process run, alternating rounds; figures are medians unless a percentile is named.");
        sb.AppendLine();
        sb.AppendLine("| figure | result | baseline (same run) | ratio | target | verdict | note |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in _rows)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Figure} | {r.Result} | {r.Baseline} | {r.Ratio} | {r.Target} | {r.Verdict} | {r.Note} |");
        }

        return sb.ToString();
    }

    private static string Load()
    {
        try
        {
            return string.Join(", ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static string Cpu()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static string Memory()
    {
        try
        {
            var kb = long.Parse(File.ReadLines("/proc/meminfo").First().Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            return $"{kb / 1024 / 1024} GiB";
        }
        catch (IOException)
        {
            return "?";
        }
    }
}

internal static class Proc
{
    /// <summary>PIDs of live processes whose whole command line is <paramref name="commandLine"/>.</summary>
    public static int Count(string commandLine)
    {
        var n = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                if (stat[(stat.LastIndexOf(')') + 2)..][0] != 'Z'
                    && File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ').Trim() == commandLine)
                {
                    n++;
                }
            }
            catch (IOException)
            {
            }
        }

        return n;
    }

    public static long RssBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }

    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout)
            {
                throw new TimeoutException("condition not met");
            }

            await Task.Delay(2);
        }
    }
}

internal static class EventWait
{
    public static async Task<DispatcherEvent> NextAsync(DispatcherSubscription s, Func<DispatcherEvent, bool> match)
    {
        await foreach (var e in s.ReadAllAsync())
        {
            if (match(e))
            {
                return e;
            }
        }

        throw new InvalidOperationException("subscription ended");
    }
}
