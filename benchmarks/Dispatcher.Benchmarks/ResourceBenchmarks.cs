using System.Diagnostics;
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
        var results = new Dictionary<string, (double Serial, double Parallel)>();
        foreach (var mode in new[] { "memory", "journal, fsync", "journal, no fsync" })
        {
            var dir = Directory.CreateTempSubdirectory("bench-store-").FullName;
            try
            {
                await using var bench = new BenchDispatcher(o =>
                {
                    if (mode != "memory")
                    {
                        o.DataDirectory = dir;
                        o.FlushToDisk = mode == "journal, fsync";
                    }
                });
                var d = bench.Dispatcher;
                await d.EnqueueAsync(new JobRequest("blocker", ["sleep 3600"]) { Queue = DispatcherQueues.PkgQueue });
                var sw = Stopwatch.StartNew();
                for (var i = 0; i < jobs; i++)
                {
                    await d.EnqueueAsync(new JobRequest($"s{i}", ["true"]) { Queue = DispatcherQueues.PkgQueue });
                }

                var serial = jobs / sw.Elapsed.TotalSeconds;
                sw.Restart();
                await Task.WhenAll(Enumerable.Range(0, 16).Select(w => Task.Run(async () =>
                {
                    for (var i = w; i < jobs; i += 16)
                    {
                        await d.EnqueueAsync(new JobRequest($"c{i}", ["true"]) { Queue = DispatcherQueues.PkgQueue });
                    }
                })));
                var parallel = jobs / sw.Elapsed.TotalSeconds;
                results[mode] = (serial, parallel);
                await d.KillAsync(d.List().Select(j => j.Id));
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        var memory = results["memory"];
        foreach (var mode in new[] { "journal, fsync", "journal, no fsync" })
        {
            var (s, p) = results[mode];
            report.Add($"enqueue with the durable store ({mode})", $"{F(s, 0)}/s one at a time, {F(p, 0)}/s from 16 callers",
                $"in memory: {F(memory.Serial, 0)}/s, {F(memory.Parallel, 0)}/s", $"{F(memory.Serial / s, 1)}× / {F(memory.Parallel / p, 1)}× slower",
                "report both; group commits keep the store within 2×", memory.Parallel / p <= 2, $"{jobs} enqueues each; the 2× target is judged on 16 callers (group commit)");
        }
    }
}
