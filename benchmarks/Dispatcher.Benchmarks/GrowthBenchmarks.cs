using System.Diagnostics;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>
/// How the engine's cost grows with the number of pending jobs (1k, 10k, 100k), through <see cref="IDispatcher"/> in process:
/// enqueue, List(), kill of one pending job, kill of all, and managed memory per pending job.
/// </summary>
internal static class GrowthBenchmarks
{
    private const string Command = "pkg install -y misc/pcbsd-meta-mate";

    public static async Task PendingAsync(Report report, int[] sizes)
    {
        _ = await SizeAsync(1_000); // JIT warm-up, not reported
        var results = new Dictionary<int, Sample>();
        foreach (var n in sizes)
        {
            results[n] = await SizeAsync(n);
        }

        var (first, last) = (results[sizes[0]], results[sizes[^1]]);
        string Curve(Func<Sample, double> f, string unit, int decimals) => string.Join(", ", sizes.Select(n => $"{Label(n)}: {F(f(results[n]), decimals)} {unit}"));
        string Grows(Func<Sample, double> f) => $"{F(f(last) / f(first), 2)}× from {Label(sizes[0])} to {Label(sizes[^1])}";

        report.Add("growth: enqueue into a blocked queue (each of the last 1 000 enqueues at n pending), in process", Curve(s => s.EnqueueUs, "µs", 2),
            $"n = {Label(sizes[0])}: {F(first.EnqueueUs, 2)} µs", Grows(s => s.EnqueueUs), "≤ 3× (O(log n))", last.EnqueueUs / first.EnqueueUs <= 3,
            $"per call, median of 1 000 (means: {Curve(s => s.EnqueueMeanUs, "µs", 2)})");
        report.Add("growth: kill of one pending job among n, in process", Curve(s => s.KillOneUs, "µs", 2),
            $"n = {Label(sizes[0])}: {F(first.KillOneUs, 2)} µs", Grows(s => s.KillOneUs), "≤ 3× (O(log n))", last.KillOneUs / first.KillOneUs <= 3, "median of 200 kills spread over the queue");
        report.Add("growth: kill of all n pending jobs in one call, in process", Curve(s => s.KillAllUs, "µs per job", 2),
            $"n = {Label(sizes[0])}: {F(first.KillAllUs, 2)} µs per job", Grows(s => s.KillAllUs), "≤ 3× per job", last.KillAllUs / first.KillAllUs <= 3, "one KillAsync with every id");
        report.Add("growth: `List()` with n pending, in process", Curve(s => s.ListMs, "ms", 3),
            $"n = {Label(sizes[0])}: {F(first.ListMs, 3)} ms", $"{F(last.ListMs / last.N * 1e6 / (first.ListMs / first.N * 1e6), 2)}× per job",
            "linear; 100k ≤ 100 ms", last.ListMs <= 100, "median of 5 calls");
        report.Add("growth: managed memory per pending job", Curve(s => s.BytesPerJob, "B", 0),
            $"command text {Command.Length * 2} B (UTF-16)", $"{F(last.BytesPerJob / first.BytesPerJob, 2)}× from {Label(sizes[0])} to {Label(sizes[^1])}",
            "≤ 1 KiB beyond the command text", last.BytesPerJob - (Command.Length * 2) <= 1024, $"GC.GetTotalMemory after a full collection; host RSS at {Label(sizes[^1])}: +{F(last.RssGrowth / 1048576.0, 0)} MB");
    }

    private sealed record Sample(int N, double EnqueueUs, double EnqueueMeanUs, double KillOneUs, double KillAllUs, double ListMs, double BytesPerJob, long RssGrowth);

    private static string Label(int n) => n >= 1000 ? $"{n / 1000}k" : n.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<Sample> SizeAsync(int n)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var rss0 = Proc.RssBytes();
        await using var bench = new BenchDispatcher();
        var d = bench.Dispatcher;
        await d.EnqueueAsync(new JobRequest("blocker", ["sleep 3600"]) { Queue = DispatcherQueues.PkgQueue });
        var mem0 = GC.GetTotalMemory(forceFullCollection: true);
        var tail = Math.Min(1000, n);
        for (var i = 0; i < n - tail; i++)
        {
            await d.EnqueueAsync(new JobRequest($"p{i}", [Command]) { Queue = DispatcherQueues.PkgQueue });
        }

        // Each enqueue timed by itself: the median is the operation's cost; the mean also carries whatever collection of the
        // whole heap fell into these 1 000 calls (one full collection of 100k jobs is milliseconds: tens of µs on the mean).
        var enqueues = new List<double>(tail);
        var t0 = Stopwatch.GetTimestamp();
        for (var i = n - tail; i < n; i++)
        {
            var t = Stopwatch.GetTimestamp();
            await d.EnqueueAsync(new JobRequest($"p{i}", [Command]) { Queue = DispatcherQueues.PkgQueue });
            enqueues.Add(Stopwatch.GetElapsedTime(t).TotalMicroseconds);
        }

        var enqueueMeanUs = Stopwatch.GetElapsedTime(t0).TotalMicroseconds / tail;
        var enqueueUs = Median(enqueues);
        var mem1 = GC.GetTotalMemory(forceFullCollection: true);
        var rss = Proc.RssBytes() - rss0;

        var lists = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            t0 = Stopwatch.GetTimestamp();
            _ = d.List();
            lists.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }

        var kills = new List<double>();
        var step = Math.Max(1, n / 200);
        var killed = new HashSet<string>();
        for (var i = step / 2; i < n && kills.Count < 200; i += step)
        {
            var id = $"p{i}";
            t0 = Stopwatch.GetTimestamp();
            await d.KillAsync([id]);
            kills.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
            killed.Add(id);
        }

        var rest = Enumerable.Range(0, n).Select(i => $"p{i}").Where(id => !killed.Contains(id)).ToArray();
        t0 = Stopwatch.GetTimestamp();
        await d.KillAsync(rest);
        var killAllUs = Stopwatch.GetElapsedTime(t0).TotalMicroseconds / rest.Length;
        await d.KillAsync(["blocker"]);
        return new Sample(n, enqueueUs, enqueueMeanUs, Median(kills), killAllUs, Median(lists), (double)(mem1 - mem0) / n, rss);
    }
}
