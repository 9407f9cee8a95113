using System.Diagnostics;
using System.Diagnostics.Metrics;
using Dispatcher.Events;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

internal static class ResourceBenchmarks
{
    /// <summary>One job printing 200 MB, with a subscriber reading every output event: how much the host grows.</summary>
    public static async Task OutputAsync(Report report)
    {
        await using var bench = new BenchDispatcher(o => o.EventBufferCapacity = 1024);
        using var events = bench.Dispatcher.Subscribe();
        long seen = 0;
        var reader = Task.Run(async () =>
        {
            try
            {
                await foreach (var e in events.ReadAllAsync())
                {
                    if (e is JobOutputEvent o)
                    {
                        seen += o.Text.Length;
                    }
                    else if (e is JobFinishedEvent)
                    {
                        return;
                    }
                }
            }
            catch (EventStreamOverflowException)
            {
            }
        });

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var before = Proc.RssBytes();
        long peak = before;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, Proc.RssBytes());
                await Task.Delay(5);
            }
        });

        var sw = Stopwatch.StartNew();
        await bench.Dispatcher.EnqueueAsync(new JobRequest("loud", ["sh -c \"head -c 200000000 /dev/zero | tr '\\0' x\""]));
        var result = await bench.Dispatcher.WaitForCompletionAsync("loud");
        sw.Stop();
        await reader;
        await stop.CancelAsync();
        await sampler;
        var growth = (peak - before) / 1024.0 / 1024.0;
        report.Add("one job printing 200 MB", $"peak RSS growth {F(growth, 1)} MB", $"RSS before the job {F(before / 1024.0 / 1024.0, 1)} MB", "—", "growth ≤ 64 MB",
            growth <= 64, $"{F(200 / sw.Elapsed.TotalSeconds, 0)} MB/s through the dispatcher; subscriber saw {seen / 1_000_000} M chars; kept {result.CommandResults[0].Output.Length / 1024} Ki chars");
    }

    /// <summary>Kill of a running job with a child tree: from KillAsync until no process of the tree is left.</summary>
    public static async Task KillAsync(Report report, int rounds)
    {
        var grace = TimeSpan.FromMilliseconds(500);
        await using var bench = new BenchDispatcher(o => o.KillGracePeriod = grace);
        var cases = new (string Name, string Command, string Marker)[]
        {
            ("tree that obeys SIGTERM", "sh -c \"sleep 3201 & sleep 3201\"", "sleep 3201"),
            ("tree that ignores SIGTERM, with a double-forked child", "sh -c \"trap '' TERM; (sleep 3202 &); sleep 3202\"", "sleep 3202"),
        };
        foreach (var (name, command, marker) in cases)
        {
            var times = new List<double>();
            for (var i = 0; i < rounds; i++)
            {
                var id = $"k{marker}-{i}";
                await bench.Dispatcher.EnqueueAsync(new JobRequest(id, [command]));
                await Proc.WaitUntilAsync(() => Proc.Count(marker) == 2, TimeSpan.FromSeconds(10));
                var t0 = Stopwatch.GetTimestamp();
                await bench.Dispatcher.KillAsync([id]);
                await Proc.WaitUntilAsync(() => Proc.Count(marker) == 0, TimeSpan.FromSeconds(10));
                times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                await bench.Dispatcher.WaitForCompletionAsync(id);
            }

            var worst = times.Max();
            report.Add($"kill of a running {name}", $"gone in {F(Median(times), 0)} ms median, {F(worst, 0)} ms worst", $"grace period {grace.TotalMilliseconds} ms", "—",
                "≤ grace + 200 ms", worst <= grace.TotalMilliseconds + 200, $"{rounds} rounds; probe polls /proc every 2 ms");
        }
    }

    /// <summary>Enqueue throughput into a blocked queue, in memory and with the journal (with and without fsync).</summary>
    public static async Task StoreAsync(Report report, int jobs)
    {
        // BENCH_STORE_CALLERS (e.g. "16") and BENCH_STORE_FSYNC_ONLY=1 (in memory and the fsync'd journal only) narrow the section
        // for profiles and alternating runs against another build.
        var callerCounts = Environment.GetEnvironmentVariable("BENCH_STORE_CALLERS") is { Length: > 0 } only
            ? only.Split(',').Select(int.Parse).ToArray()
            : [16, 64];
        var fsyncOnly = Environment.GetEnvironmentVariable("BENCH_STORE_FSYNC_ONLY") == "1";
        string[] modes = fsyncOnly ? ["memory", "journal, fsync"] : ["memory", "journal, fsync", "journal, no fsync", Appended];
        // One untimed round of each mode first: in a profile of 16 fsync'd callers the JIT's tiering thread still took 30 % of the
        // process's samples in the second measured round (4 % in the third), and it counted in the CPU per enqueue.
        foreach (var mode in modes)
        {
            _ = await StoreRunAsync(mode, jobs / 4, callerCounts[0]);
        }

        foreach (var callers in callerCounts)
        {
            // Three rounds, alternating the modes; the medians are reported. The concurrent phase enqueues ten times as many
            // jobs as the serial one (in memory it takes only milliseconds).
            var rounds = new Dictionary<string, List<(double Serial, double Parallel, double RecordsPerCommit, double CommitMs, double CpuUs, double Bytes, double Gen0)>>();
            var diskFlush = new List<double>();
            for (var round = 0; round < 3; round++)
            {
                foreach (var mode in modes)
                {
                    (rounds.TryGetValue(mode, out var list) ? list : rounds[mode] = []).Add(await StoreRunAsync(mode, jobs, callers));
                }

                diskFlush.Add(DiskFlushMs(records: 300));
            }

            var results = rounds.ToDictionary(r => r.Key, r => (
                Serial: Median(r.Value.Select(v => v.Serial)), Parallel: Median(r.Value.Select(v => v.Parallel)),
                RecordsPerCommit: Median(r.Value.Select(v => v.RecordsPerCommit)), CommitMs: Median(r.Value.Select(v => v.CommitMs)),
                CpuUs: Median(r.Value.Select(v => v.CpuUs)), Bytes: Median(r.Value.Select(v => v.Bytes)), Gen0: Median(r.Value.Select(v => v.Gen0))));

            var memory = results["memory"];
            foreach (var mode in modes.Skip(1))
            {
                var (s, p, perCommit, commitMs, cpuUs, bytes, gen0) = results[mode];

                // With every caller waiting for its flush, time ≈ the enqueue work (as in memory) + one flush per group; the
                // groups can hold at most `callers` records, which bounds the ratio from below.
                var bound = mode != "journal, no fsync" ? 1 + (commitMs / 1000 / callers * memory.Parallel) : double.NaN;
                report.Add($"enqueue with the durable store ({mode}), {callers} concurrent callers", $"{F(s, 0)}/s one at a time, {F(p, 0)}/s from {callers} callers",
                    $"in memory: {F(memory.Serial, 0)}/s, {F(memory.Parallel, 0)}/s", $"{F(memory.Serial / s, 1)}× / {F(memory.Parallel / p, 1)}× slower",
                    "report both; group commits keep the store within 2×", memory.Parallel / p <= 2,
                    $"{jobs} enqueues one at a time, {jobs * 10} concurrently, medians of 3 rounds; judged on the concurrent callers; {F(perCommit, 1)} records per commit, {F(commitMs, 3)} ms per commit"
                    + (double.IsNaN(bound) ? string.Empty : $"; even {callers} records per commit would leave it ≥ {F(bound, 1)}× slower"));
                if (mode == "journal, fsync")
                {
                    // The flush bound: every flush carrying all `callers` records, back to back, each flush taking what the disk
                    // takes to make one appended record durable (a write and an fsync, measured in the same rounds on a file in
                    // the same file system). The journal's own commit time is in the note: measured against it, a cheaper flush
                    // (the preallocated journal's fdatasync) would lower the ratio, which is why the bound is the disk's.
                    var flushMs = Median(diskFlush);
                    var flushBound = callers / (flushMs / 1000);
                    var ownBound = callers / (commitMs / 1000);
                    report.Add($"fsync'd enqueue against the flush bound, {callers} concurrent callers", $"{F(p, 0)}/s",
                        $"flush bound {F(flushBound, 0)}/s ({callers} callers ÷ {F(flushMs, 3)} ms, the disk's append + fsync of one record; rounds {string.Join("/", diskFlush.Select(v => F(v, 3)))} ms)",
                        $"{F(p / flushBound, 2)}×", "≥ 0.9× the flush bound", p / flushBound >= 0.9,
                        $"{F(perCommit, 1)} of {callers} possible records per commit; the journal's commit (write + fdatasync into preallocated zeros) {F(commitMs, 3)} ms, "
                        + $"so {F(p / ownBound, 2)}× of its own bound ({callers} ÷ its commit time): the rest is the callers' round trip between flushes; "
                        + $"process CPU {F(cpuUs, 1)} µs per enqueue (in memory {F(memory.CpuUs, 1)} µs), so {F(callers * cpuUs / Environment.ProcessorCount / 1000, 3)} ms of the {Environment.ProcessorCount} cores per group of {callers}; "
                        + $"{F(bytes, 0)} bytes allocated per enqueue (in memory {F(memory.Bytes, 0)}), {F(gen0, 0)} gen0 collections per round (in memory {F(memory.Gen0, 0)})");
                }
            }
        }
    }

    // The journal as it was before preallocation (appended, so every flush also commits the file's new size), same rounds.
    private const string Appended = "journal, fsync, appended without preallocation (before)";

    /// <summary>Mean time to append a 300-byte record to a file and fsync it (what a journal without preallocation pays per flush).</summary>
    private static double DiskFlushMs(int records)
    {
        var dir = Directory.CreateTempSubdirectory("bench-flush-").FullName;
        try
        {
            var record = new byte[300];
            Array.Fill(record, (byte)'x');
            record[^1] = (byte)'\n';
            using var file = new FileStream(Path.Combine(dir, "flush"), FileMode.Append, FileAccess.Write, FileShare.Read, 1);
            for (var i = 0; i < 20; i++)
            {
                file.Write(record);
                file.Flush(flushToDisk: true);
            }

            var sw = Stopwatch.StartNew();
            for (var i = 0; i < records; i++)
            {
                file.Write(record);
                file.Flush(flushToDisk: true);
            }

            return sw.Elapsed.TotalMilliseconds / records;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<(double Serial, double Parallel, double RecordsPerCommit, double CommitMs, double CpuUs, double Bytes, double Gen0)> StoreRunAsync(string mode, int jobs, int callers)
    {
        var dir = Directory.CreateTempSubdirectory("bench-store-").FullName;
        try
        {
            await using var bench = new BenchDispatcher(o =>
            {
                if (mode != "memory")
                {
                    o.DataDirectory = dir;
                    o.FlushToDisk = mode != "journal, no fsync";
                }
            });
            var d = bench.Dispatcher;
            if (mode == Appended)
            {
                ((Dispatcher.Storage.FileJobStore)((Dispatcher.Internal.DefaultDispatcher)d).Store!).PreallocationBytes = 0;
            }

            await d.EnqueueAsync(new JobRequest("blocker", ["sleep 3600"]) { Queue = DispatcherQueues.PkgQueue });
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < jobs; i++)
            {
                await d.EnqueueAsync(new JobRequest($"s{i}", ["true"]) { Queue = DispatcherQueues.PkgQueue });
            }

            var serial = jobs / sw.Elapsed.TotalSeconds;

            // The journal's own metrics tell how many records each commit carried, and how long it took.
            long commits = 0, records = 0;
            double seconds = 0;
            using var listener = new MeterListener();
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "Dispatcher" && instrument.Name.StartsWith("dispatcher.journal.commit.", StringComparison.Ordinal))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            listener.SetMeasurementEventCallback<int>((_, value, _, _) =>
            {
                Interlocked.Increment(ref commits);
                Interlocked.Add(ref records, value);
            });
            listener.SetMeasurementEventCallback<double>((_, value, _, _) =>
            {
                lock (listener)
                {
                    seconds += value;
                }
            });
            listener.Start();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var allocated = GC.GetTotalAllocatedBytes(precise: true);
            var gen0 = GC.CollectionCount(0);
            sw.Restart();
            await Task.WhenAll(Enumerable.Range(0, callers).Select(w => Task.Run(async () =>
            {
                for (var i = w; i < jobs * 10; i += callers)
                {
                    await d.EnqueueAsync(new JobRequest($"c{i}", ["true"]) { Queue = DispatcherQueues.PkgQueue });
                }
            })));
            var parallel = jobs * 10 / sw.Elapsed.TotalSeconds;
            if (Environment.GetEnvironmentVariable("BENCH_STORE_MARK") == "1")
            {
                // The concurrent phase in CLOCK_MONOTONIC seconds (Stopwatch's clock on Linux): `perf record -k mono`, then
                // `perf script --time START,END` keeps only its samples.
                var end = Stopwatch.GetTimestamp();
                var start = end - sw.Elapsed.Ticks * (Stopwatch.Frequency / TimeSpan.TicksPerSecond);
                Console.Error.WriteLine($"store phase {mode}, {callers} callers: {(double)start / Stopwatch.Frequency:F6},{(double)end / Stopwatch.Frequency:F6}");
            }

            var cpuUs = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / (jobs * 10);
            var bytes = (double)(GC.GetTotalAllocatedBytes(precise: true) - allocated) / (jobs * 10);
            var collections = GC.CollectionCount(0) - gen0;
            listener.Dispose();
            await d.KillAsync(d.List().Select(j => j.Id));
            return (serial, parallel, commits == 0 ? double.NaN : (double)records / commits, commits == 0 ? double.NaN : seconds * 1000 / commits, cpuUs, bytes, collections);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
