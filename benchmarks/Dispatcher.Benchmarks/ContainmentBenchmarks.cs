using System.Diagnostics;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>What containment costs a serial queue of `true`: cgroups per job (mkdir, rmdir) and the stub that waits to be placed.</summary>
internal static class ContainmentBenchmarks
{
    /// <summary>
    /// A serial queue of `true` with containment Off, Auto (cgroup v2 where writable) and the cgroup v1 freezer, in alternating
    /// rounds. Per job: the median interval between consecutive jobs' ends (robust to the other workers' load spikes, which
    /// a throughput figure over a round is not), and the median time from a job's start to its end.
    /// <c>BENCH_CONTAINMENT_MODES=Auto</c> (a comma list) runs only those modes, for strace or perf.
    /// </summary>
    public static async Task SerialAsync(Report report, int jobs, int rounds)
    {
        var modes = (Environment.GetEnvironmentVariable("BENCH_CONTAINMENT_MODES") is { Length: > 0 } only
            ? only.Split(',').Select(Enum.Parse<ContainmentMode>)
            : [ContainmentMode.Off, ContainmentMode.Auto, ContainmentMode.CgroupV1]).ToList();
        var runs = new Dictionary<ContainmentMode, List<Serial>>();
        var described = new Dictionary<ContainmentMode, string>();
        foreach (var mode in modes)
        {
            // Warm-up (JIT tiers, thread pool), and whether the mode can be had here at all.
            if (await RunAsync(mode, jobs / 4) is { } warm)
            {
                runs[mode] = [];
                described[mode] = warm.Containment;
            }
        }

        for (var round = 0; round < rounds; round++)
        {
            foreach (var (mode, list) in runs)
            {
                list.Add((await RunAsync(mode, jobs))!);
            }
        }

        if (!runs.TryGetValue(ContainmentMode.Off, out var offRuns))
        {
            return;
        }

        var off = Summary.Of(offRuns);
        report.Add($"containment Off: serial queue, {rounds}×{jobs} jobs of `true`, per job", $"{F(off.Interval, 2)} ms", "(the baseline of the rows below)",
            "1.00×", "reported", null, $"start to end {F(off.Run, 2)} ms; CPU {F(off.SelfCpu, 2)} ms in the host, {F(off.ChildCpu, 2)} ms in the children; {F(off.Rate, 0)} jobs/s (rounds {off.Rounds})");
        foreach (var (mode, list) in runs.Where(r => r.Key != ContainmentMode.Off))
        {
            var on = Summary.Of(list);
            report.Add($"containment {mode} ({described[mode]}): serial queue, {rounds}×{jobs} jobs of `true`, per job", $"{F(on.Interval, 2)} ms",
                $"{F(off.Interval, 2)} ms (containment Off)", $"{F(on.Interval / off.Interval, 2)}×", "reported", null,
                $"+{F(on.Interval - off.Interval, 2)} ms per job; start to end {F(on.Run, 2)} ms against {F(off.Run, 2)} ms; "
                + $"CPU {F(on.SelfCpu, 2)} ms in the host (+{F(on.SelfCpu - off.SelfCpu, 2)}), {F(on.ChildCpu, 2)} ms in the children (+{F(on.ChildCpu - off.ChildCpu, 2)}); "
                + $"{F(on.Rate, 0)} against {F(off.Rate, 0)} jobs/s (rounds {on.Rounds})");
        }
    }

    /// <summary>
    /// Jobs one at a time with a pause between them, as an administrator's commands come: the start to end of a `true`
    /// (median, ms) per mode in alternating rounds. A cgroup migration (a write to <c>cgroup.procs</c>) waits for an RCU grace
    /// period when no migration happened during the last one, so jobs further apart than that pay it each time.
    /// </summary>
    public static async Task SparseAsync(Report report, int jobs, int rounds, TimeSpan pause)
    {
        var modes = new[] { ContainmentMode.Off, ContainmentMode.Auto, ContainmentMode.CgroupV1 };
        var starts = new Dictionary<ContainmentMode, List<double>>();
        foreach (var mode in modes)
        {
            if (await RunSparseAsync(mode, 5, pause) is not null)
            {
                starts[mode] = [];
            }
        }

        for (var round = 0; round < rounds; round++)
        {
            foreach (var (mode, list) in starts)
            {
                list.AddRange((await RunSparseAsync(mode, jobs, pause))!);
            }
        }

        if (!starts.TryGetValue(ContainmentMode.Off, out var offList))
        {
            return;
        }

        var off = Median(offList);
        foreach (var (mode, list) in starts.Where(s => s.Key != ContainmentMode.Off))
        {
            var on = Median(list);
            report.Add($"containment {mode}: one `true` at a time, {F(pause.TotalMilliseconds, 0)} ms apart, {rounds}×{jobs} jobs, start to end", $"{F(on, 2)} ms",
                $"{F(off, 2)} ms (containment Off)", $"{F(on / off, 2)}×", "reported", null,
                $"+{F(on - off, 2)} ms per job; p90 {F(Percentile(list, 90), 2)} ms against {F(Percentile(offList, 90), 2)} ms");
        }
    }

    private static async Task<List<double>?> RunSparseAsync(ContainmentMode mode, int jobs, TimeSpan pause)
    {
        BenchDispatcher bench;
        try
        {
            bench = new BenchDispatcher(o => o.Containment.Mode = mode);
        }
        catch (InvalidOperationException)
        {
            return null;
        }

        await using (bench)
        {
            var list = new List<double>();
            for (var i = 0; i < jobs; i++)
            {
                await bench.Dispatcher.EnqueueAsync(new JobRequest($"s{i}", ["true"]));
                var r = await bench.Dispatcher.WaitForCompletionAsync($"s{i}");
                list.Add((r.FinishedAt - r.StartedAt!.Value).TotalMilliseconds);
                await Task.Delay(pause); // the point of this figure: jobs that come apart
            }

            return list;
        }
    }

    /// <summary>What running as another user costs (setpriv exec'd before the command), against the host's own user.</summary>
    public static async Task RunAsAsync(Report report, int jobs, int rounds)
    {
        if (Environment.UserName != "root")
        {
            return;
        }

        await RunAsync(ContainmentMode.Off, jobs / 4, "nobody");
        var own = new List<double>();
        var other = new List<double>();
        for (var round = 0; round < rounds; round++)
        {
            own.Add((await RunAsync(ContainmentMode.Off, jobs))!.Rate);
            other.Add((await RunAsync(ContainmentMode.Off, jobs, "nobody"))!.Rate);
        }

        var (o, n) = (Median(own), Median(other));
        report.Add($"run as nobody: serial queue, {jobs} jobs of `true`", $"{F(n, 0)} jobs/s", $"{F(o, 0)} jobs/s (the host's own user)",
            $"{F(n / o, 2)}×", "reported", null, $"{F((1000 / n) - (1000 / o), 2)} ms more per job (setpriv exec'd before the command); rounds {string.Join("/", other.Select(v => F(v, 0)))}");
    }

    private static async Task<Serial?> RunAsync(ContainmentMode mode, int jobs, string? runAs = null)
    {
        BenchDispatcher bench;
        try
        {
            bench = new BenchDispatcher(o =>
            {
                o.Containment.Mode = mode;
                o.Queues["bench"] = new QueueOptions { MaxConcurrency = 1, RunAs = runAs };
            });
        }
        catch (InvalidOperationException)
        {
            return null;
        }

        await using (bench)
        {
            var d = bench.Dispatcher;
            var cpu = CpuTime.Now();
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < jobs; i++)
            {
                await d.EnqueueAsync(new JobRequest($"c{i}", ["true"]) { Queue = "bench" });
            }

            await d.WaitForCompletionAsync($"c{jobs - 1}");
            sw.Stop();
            var used = CpuTime.Now() - cpu;
            var results = Enumerable.Range(0, jobs).Select(i => d.GetResult($"c{i}")!).ToArray();
            var intervals = results.Zip(results.Skip(1), (a, b) => (b.FinishedAt - a.FinishedAt).TotalMilliseconds).ToArray();
            var run = results.Select(r => (r.FinishedAt - r.StartedAt!.Value).TotalMilliseconds).ToArray();
            var containment = (d as Internal.DefaultDispatcher)?.Containment?.Description ?? "no cgroups";
            return new Serial(jobs / sw.Elapsed.TotalSeconds, intervals, run, containment.Split(" in ")[0], used.Self / jobs, used.Children / jobs);
        }
    }

    /// <summary>
    /// One round: jobs per second, the interval between consecutive ends and each job's start to end (ms), and CPU time per job
    /// (ms) of this process and of its reaped children (the stub and the command): what a job costs the machine, which the
    /// other workers' load changes far less than it changes wall-clock times.
    /// </summary>
    private sealed record Serial(double Rate, double[] Intervals, double[] Run, string Containment, double SelfCpu, double ChildCpu);

    private sealed record Summary(double Interval, double Run, double Rate, string Rounds, double SelfCpu, double ChildCpu)
    {
        public static Summary Of(List<Serial> rounds) => new(
            Median(rounds.SelectMany(r => r.Intervals)),
            Median(rounds.SelectMany(r => r.Run)),
            Median(rounds.Select(r => r.Rate)),
            string.Join("/", rounds.Select(r => F(r.Rate, 0))),
            Median(rounds.Select(r => r.SelfCpu)),
            Median(rounds.Select(r => r.ChildCpu)));
    }

    /// <summary>CPU time (ms) of this process and of its reaped children, from /proc/self/stat (utime, stime, cutime, cstime).</summary>
    private readonly record struct CpuTime(double Self, double Children)
    {
        public static CpuTime Now()
        {
            var stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            double Ms(int field) => long.Parse(fields[field - 3], System.Globalization.CultureInfo.InvariantCulture) * 1000.0 / 100; // USER_HZ = 100
            return new(Ms(14) + Ms(15), Ms(16) + Ms(17));
        }

        public static CpuTime operator -(CpuTime a, CpuTime b) => new(a.Self - b.Self, a.Children - b.Children);
    }
}
