using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Scheduling;
using Microsoft.Extensions.DependencyInjection;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>The scale rows of queue control and scheduling: the O(log n) curve, memory per pending job, a 10 000-job run, list of 100 000.</summary>
internal static class SchedulingBenchmarks
{
    /// <summary>
    /// Scheduler operations with n jobs pending (1k, 10k, 100k): one cycle submits a job with a random priority and completes the
    /// running one (which starts the head). Baseline in the same alternating rounds: the same cycle on a hash map of the same
    /// jobs (O(1): new job and id, add, look up, remove the oldest), whose own growth from 1k to 100k is the memory
    /// hierarchy's (at 1k every structure fits in the CPU's caches, at 100k it does not), not the algorithm's. The target is
    /// on the scheduler's growth divided by the hash map's: O(log n) is log(100k) / log(1k) ≈ 1.7, O(n) would be about 100.
    /// </summary>
    public static void SchedulerCurve(Report report, int operations)
    {
        var sizes = new[] { 1_000, 10_000, 100_000 };

        // Warm-up at every size (JIT tiers, and the GC's generation sizes for 100k live jobs), not reported; then the sizes
        // alternate round by round, so that a burst of load from outside hits all of them alike.
        foreach (var n in sizes)
        {
            _ = SchedulerRound(n, operations);
            _ = HashMapRound(n, operations);
        }

        var rounds = sizes.ToDictionary(n => n, _ => new List<double>());
        var baseline = sizes.ToDictionary(n => n, _ => new List<double>());
        for (var round = 0; round < 5; round++)
        {
            foreach (var n in sizes)
            {
                rounds[n].Add(SchedulerRound(n, operations));
                baseline[n].Add(HashMapRound(n, operations));
            }
        }

        var perOp = sizes.ToDictionary(n => n, n => Median(rounds[n]));
        var hash = sizes.ToDictionary(n => n, n => Median(baseline[n]));
        var growth = perOp[100_000] / perOp[1_000];
        var hashGrowth = hash[100_000] / hash[1_000];
        report.Add("scheduler: submit + complete (starts the head), n pending", string.Join(", ", sizes.Select(n => $"{n / 1000}k: {F(perOp[n] * 1000, 2)} µs")),
            $"hash map (O(1)) of the same jobs: {string.Join(", ", sizes.Select(n => $"{n / 1000}k: {F(hash[n] * 1000, 2)} µs"))}",
            $"{F(growth, 2)}× from 1k to 100k; the hash map {F(hashGrowth, 2)}×; {F(growth / hashGrowth, 2)}× beyond it",
            "O(log n): growth ≤ 3× beyond the O(1) baseline's", growth / hashGrowth <= 3,
            $"{operations} cycles per size, medians of 5 alternating rounds (scheduler {string.Join("; ", sizes.Select(n => $"{n / 1000}k " + string.Join("/", rounds[n].Select(r => F(r * 1000, 2)))))} µs); random priorities in [-50, 50]");
    }

    private static double HashMapRound(int n, int operations)
    {
        var jobs = new Dictionary<string, BenchJob>(StringComparer.Ordinal);
        var order = new Queue<BenchJob>();
        var random = new Random(n);
        var next = 0;
        for (var i = 0; i < n + 1; i++)
        {
            var job = new BenchJob($"j{next++}", random.Next(-50, 51));
            jobs.Add(job.Id, job);
            order.Enqueue(job);
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        var t0 = Stopwatch.GetTimestamp();
        for (var i = 0; i < operations; i++)
        {
            var job = new BenchJob($"j{next++}", random.Next(-50, 51));
            if (jobs.TryAdd(job.Id, job))
            {
                order.Enqueue(job);
            }

            var oldest = order.Dequeue();
            if (jobs.TryGetValue(oldest.Id, out var found) && ReferenceEquals(found, oldest))
            {
                jobs.Remove(oldest.Id);
            }
        }

        return Stopwatch.GetElapsedTime(t0).TotalMilliseconds / operations;
    }

    private static double SchedulerRound(int n, int operations)
    {
        var scheduler = new JobScheduler<BenchJob>(TimeProvider.System);
        scheduler.AddQueue("q", 1);
        var random = new Random(n);
        var next = 0;
        BenchJob? running = null;
        for (var i = 0; i < n + 1; i++)
        {
            scheduler.TrySubmit(new BenchJob($"j{next++}", random.Next(-50, 51)), null, out var work);
            running ??= work.Start.Count > 0 ? work.Start[0] : null;
        }

        // The previous round's scheduler is garbage: collected here, not during this round's timing.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var t0 = Stopwatch.GetTimestamp();
        for (var i = 0; i < operations; i++)
        {
            scheduler.TrySubmit(new BenchJob($"j{next++}", random.Next(-50, 51)), null, out _);
            running = scheduler.Complete(running!, succeeded: true).Start[0];
        }

        return Stopwatch.GetElapsedTime(t0).TotalMilliseconds / operations;
    }

    /// <summary>Host memory per pending job, beyond its id and command text: 100 000 jobs held in a paused queue.</summary>
    public static async Task PendingMemoryAsync(Report report, int jobs)
    {
        await using var bench = new BenchDispatcher();
        await bench.Dispatcher.PauseQueueAsync(DispatcherQueues.PkgQueue);
        var empty = Settle();
        var requests = new JobRequest[jobs];
        for (var i = 0; i < jobs; i++)
        {
            requests[i] = new JobRequest($"pending-{i:000000}", [$"pkg install -y misc/package-{i:000000}"]) { Queue = DispatcherQueues.PkgQueue };
        }

        // The requests (with their id and command strings) exist before and are kept alive after: what is measured is only
        // what the dispatcher adds to hold them.
        var before = Settle();
        foreach (var request in requests)
        {
            await bench.Dispatcher.EnqueueAsync(request);
        }

        var after = Settle();
        GC.KeepAlive(requests);
        var perJob = (after - before) / (double)jobs;
        var requestBytes = (before - empty) / (double)jobs;
        report.Add($"memory per pending job, {jobs / 1000}k pending", $"{F(perJob, 0)} bytes", $"the request with its id and command text: {F(requestBytes, 0)} bytes (not counted)",
            "—", "≤ 1024 bytes beyond the command text", perJob <= 1024,
            $"GC heap after a full collection, before and after enqueueing into a paused queue; id and command text are held by the caller's requests in both");
    }

    private static long Settle()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    /// <summary>One WebSocket run of 10 000 jobs, acknowledged once every one is durable (journal with fsync); baseline in memory.</summary>
    public static async Task RunTenThousandAsync(Report report, int jobs, int rounds)
    {
        var durable = new List<double>();
        var memory = new List<double>();
        var run = new JsonObject { ["action"] = "run" };
        for (var i = 0; i < jobs; i++)
        {
            run[$"batch-{i:00000}"] = new JsonObject { ["commands"] = "pkg install -y misc/pcbsd-meta-mate", ["queue"] = "pkg_queue" };
        }

        var request = $$"""{"namespace":"rpc","name":"dispatcher","id":"r","args":{{run.ToJsonString()}}}""";
        for (var round = 0; round < rounds + 1; round++)
        {
            foreach (var withStore in new[] { true, false })
            {
                var data = Directory.CreateTempSubdirectory("bench-run-").FullName;
                try
                {
                    await using var server = await BenchServer.StartAsync(d => d.Services.Configure<DispatcherOptions>(o => o.DataDirectory = withStore ? data : null));
                    await server.Dispatcher.PauseQueueAsync(DispatcherQueues.PkgQueue);
                    using var ws = await server.ConnectAsync();
                    var t0 = Stopwatch.GetTimestamp();
                    await BenchServer.SendAsync(ws, request);
                    var reply = await BenchServer.ReceiveAsync(ws, new byte[4 << 20]);
                    var ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                    if (!reply.Contains($"batch-{jobs - 1:00000}", StringComparison.Ordinal) || reply.Contains("rejected", StringComparison.Ordinal))
                    {
                        throw new InvalidOperationException("The run was not accepted whole: " + reply[..Math.Min(300, reply.Length)]);
                    }

                    if (round > 0)
                    {
                        (withStore ? durable : memory).Add(ms);
                    }

                    await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                }
                finally
                {
                    Directory.Delete(data, recursive: true);
                }
            }
        }

        report.Add($"one `run` of {jobs / 1000}k jobs over WebSocket, acknowledged durably (journal, fsync)", $"{F(Median(durable), 0)} ms",
            $"in memory: {F(Median(memory), 0)} ms", $"{F(Median(durable) / Median(memory), 2)}×", "≤ 1 s", Median(durable) <= 1000,
            $"request {Encoding.UTF8.GetByteCount(request) / 1024} KiB into a paused queue; rounds: {string.Join("/", durable.Select(d => F(d, 0)))} ms (store), {string.Join("/", memory.Select(d => F(d, 0)))} ms (memory); a first round warms up");
    }

    /// <summary><c>list</c> over WebSocket with 100 000 pending jobs; baseline the same with 10 000.</summary>
    public static async Task ListHundredThousandAsync(Report report, int samples)
    {
        await using var server = await BenchServer.StartAsync();
        await server.Dispatcher.PauseQueueAsync(DispatcherQueues.PkgQueue);
        using var ws = await server.ConnectAsync();
        var buffer = new byte[32 << 20];
        var results = new Dictionary<int, List<double>>();
        var total = 0;
        foreach (var n in new[] { 10_000, 100_000 })
        {
            for (; total < n; total++)
            {
                await server.Dispatcher.EnqueueAsync(new JobRequest($"p{total}", ["pkg install -y misc/pcbsd-meta-mate"]) { Queue = DispatcherQueues.PkgQueue });
            }

            var times = new List<double>();
            for (var i = 0; i < samples + 3; i++)
            {
                var t0 = Stopwatch.GetTimestamp();
                await BenchServer.SendAsync(ws, """{"namespace":"rpc","name":"dispatcher","id":"l","args":{"action":"list"}}""");
                await BenchServer.ReceiveAsync(ws, buffer);
                if (i >= 3)
                {
                    times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
            }

            results[n] = times;
        }

        var big = results[100_000];
        report.Add("`list` over WebSocket, 100 000 pending jobs", $"p50 {F(Median(big), 1)} ms, p99 {F(Percentile(big, 99), 1)} ms",
            $"10 000 pending: p50 {F(Median(results[10_000]), 1)} ms", $"{F(Median(big) / Median(results[10_000]), 1)}×", "≤ 100 ms p50", Median(big) <= 100,
            $"{samples} round trips each, after 3 warm-up ones");
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
    }

    private sealed class BenchJob(string id, int priority) : ScheduledJob(id, "q", priority);
}
