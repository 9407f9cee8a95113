using System.Diagnostics;
using Dispatcher.Events;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>Throughput and latency of running `true` through the dispatcher, against a plain Process.Start loop.</summary>
internal static class SpawnBenchmarks
{
    public static async Task ThroughputAsync(Report report, int jobs, int rounds)
    {
        if (Environment.GetEnvironmentVariable("BENCH_SPAWN_ROUNDS") is { Length: > 0 } r)
        {
            rounds = int.Parse(r, System.Globalization.CultureInfo.InvariantCulture);
        }

        // Warm both sides up (JIT tiers, thread pool size) so that no measured round pays for it.
        await BaselineAsync(jobs / 2, 2);
        await DispatcherAsync(jobs / 2, 2, awaitEach: true);
        _ = await SpawnLimit.CLoopAsync(jobs / 2, 2);
        // BENCH_SPAWN_LIMITS=1,2 runs only those concurrencies (0: no limit), for perf and for A/B rounds against another build.
        var limits = Environment.GetEnvironmentVariable("BENCH_SPAWN_LIMITS") is { Length: > 0 } only
            ? only.Split(',').Select(v => int.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray()
            : [1, 2, 8, 0];
        // BENCH_SPAWN_OURS_ONLY=1: only the dispatcher's own rounds (no C, Process or awaited rounds), for perf.
        var oursOnly = Environment.GetEnvironmentVariable("BENCH_SPAWN_OURS_ONLY") == "1";
        foreach (var limit in limits)
        {
            if (oursOnly)
            {
                for (var round = 0; round < rounds; round++)
                {
                    var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                    var allocated = GC.GetTotalAllocatedBytes(precise: true);
                    var collections = GC.CollectionCount(0);
                    var rate = await DispatcherAsync(jobs, limit, awaitEach: false);
                    Console.WriteLine($"limit {limit}: {F(rate, 0)} jobs/s, host CPU {F((Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / jobs, 0)} µs per job, "
                        + $"{(GC.GetTotalAllocatedBytes(precise: true) - allocated) / jobs} B allocated per job, {GC.CollectionCount(0) - collections} gen0 collections");
                }

                continue;
            }

            var ours = new List<double>();
            var plain = new List<double>();
            var awaited = new List<double>();
            var c = new List<double>();
            var ourCpu = new List<double>();
            var cCpu = new List<double>();
            for (var round = 0; round < rounds; round++)
            {
                if (await SpawnLimit.CLoopWithCpuAsync(jobs, limit) is { } limitRate)
                {
                    c.Add(limitRate.Rate);
                    cCpu.Add(limitRate.CpuPerJob);
                }

                plain.Add(await BaselineAsync(jobs, limit));
                var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                ours.Add(await DispatcherAsync(jobs, limit, awaitEach: false));
                ourCpu.Add((Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / jobs);
                awaited.Add(await DispatcherAsync(jobs, limit, awaitEach: true));
            }

            var (o, p, a) = (Median(ours), Median(plain), Median(awaited));
            var cl = c.Count > 0 ? Median(c) : double.NaN;
            var inFlight = limit == 0 ? "all" : limit.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var figure = limit switch
            {
                1 => $"serial queue, in process, in memory: {jobs} jobs of `true`, enqueue to last finished",
                0 => $"queue without limit, in process, in memory: {jobs} jobs of `true`",
                _ => $"queue limit {limit}, in process, in memory: {jobs} jobs of `true`",
            };
            var baseline = double.IsNaN(cl)
                ? $"{F(p, 0)} jobs/s (Process.Start + WaitForExit, {inFlight} in flight); no C compiler"
                : $"limit (C posix_spawn loop, {inFlight} in flight) {F(cl, 0)} jobs/s; Process.Start + WaitForExit {F(p, 0)} jobs/s";
            var ratio = double.IsNaN(cl) ? $"{F(o / p, 2)}× Process loop" : $"{F(o / cl, 2)}× limit, {F(o / p, 2)}× Process loop";
            report.Add(figure, $"{F(o, 0)} jobs/s", baseline, ratio, "≥ 0.9× limit", !double.IsNaN(cl) && o / cl >= 0.9,
                $"rounds: ours {string.Join("/", ours.Select(v => F(v, 0)))}, C {string.Join("/", c.Select(v => F(v, 0)))}, Process {string.Join("/", plain.Select(v => F(v, 0)))}; "
                + $"with a WaitForCompletionAsync per job {F(a, 0)} jobs/s; host CPU per job {F(Median(ourCpu), 0)} µs, the C loop's {F(Median(cCpu), 0)} µs "
                + $"(rounds {string.Join("/", ourCpu.Select(v => F(v, 0)))})");
        }
    }

    /// <summary>
    /// Enqueue to last finished. The harness waits for the last job, then for any job not finished yet, so it measures the
    /// dispatcher rather than 1 000 awaiters; <paramref name="awaitEach"/> measures the other way too (one waiter per job, each
    /// resumed on the thread pool), reported in the note.
    /// </summary>
    private static async Task<double> DispatcherAsync(int jobs, int limit, bool awaitEach)
    {
        await using var bench = new BenchDispatcher(o => o.Queues["bench"] = new QueueOptions { MaxConcurrency = limit });
        var d = bench.Dispatcher;
        var ids = Enumerable.Range(0, jobs).Select(i => $"t{i}").ToArray();
        var sw = Stopwatch.StartNew();
        foreach (var id in ids)
        {
            await d.EnqueueAsync(new JobRequest(id, ["true"]) { Queue = "bench" });
        }

        if (awaitEach)
        {
            await Task.WhenAll(ids.Select(id => d.WaitForCompletionAsync(id)));
        }
        else
        {
            await d.WaitForCompletionAsync(ids[^1]);
            foreach (var id in ids)
            {
                if (d.GetResult(id) is null)
                {
                    await d.WaitForCompletionAsync(id);
                }
            }
        }

        sw.Stop();
        return jobs / sw.Elapsed.TotalSeconds;
    }

    private static async Task<double> BaselineAsync(int jobs, int inFlight)
    {
        using var gate = new SemaphoreSlim(inFlight <= 0 ? jobs : inFlight);
        var sw = Stopwatch.StartNew();
        var tasks = new List<Task>(jobs);
        for (var i = 0; i < jobs; i++)
        {
            await gate.WaitAsync();
            tasks.Add(Task.Run(() =>
            {
                try
                {
                    using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
                    p.WaitForExit();
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        await Task.WhenAll(tasks);
        sw.Stop();
        return jobs / sw.Elapsed.TotalSeconds;
    }

    /// <summary>From the enqueue call to the first byte the command prints, against Process.Start to the first byte.</summary>
    public static async Task LatencyAsync(Report report, int samples)
    {
        await using var bench = new BenchDispatcher();
        using var events = bench.Dispatcher.Subscribe();
        var ours = new List<double>();
        var plain = new List<double>();
        for (var i = 0; i < samples; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            using (var p = Process.Start(new ProcessStartInfo("echo", "x") { UseShellExecute = false, RedirectStandardOutput = true })!)
            {
                p.StandardOutput.BaseStream.ReadByte();
                plain.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                await p.WaitForExitAsync();
            }

            var id = $"l{i}";
            t0 = Stopwatch.GetTimestamp();
            await bench.Dispatcher.EnqueueAsync(new JobRequest(id, ["echo x"]));
            await EventWait.NextAsync(events, e => e is JobOutputEvent && e.JobId == id);
            ours.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            await bench.Dispatcher.WaitForCompletionAsync(id);
        }

        var (o50, o99, p50, p99) = (Median(ours), Percentile(ours, 99), Median(plain), Percentile(plain, 99));
        report.Add("enqueue → process started (first output byte)", $"p50 {F(o50, 2)} ms, p99 {F(o99, 2)} ms",
            $"p50 {F(p50, 2)} ms, p99 {F(p99, 2)} ms (Process.Start of `echo x` to its first byte)", $"+{F(o50 - p50, 2)} ms at p50",
            "p50 ≤ baseline + 1 ms", o50 <= p50 + 1, $"{samples} samples each");
    }
}
