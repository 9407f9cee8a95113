using System.Diagnostics;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>What containment costs a serial queue of `true`: cgroups per job (mkdir, rmdir) and the stub that waits to be placed.</summary>
internal static class ContainmentBenchmarks
{
    public static async Task SerialAsync(Report report, int jobs, int rounds)
    {
        var modes = new[] { ContainmentMode.Off, ContainmentMode.CgroupV2, ContainmentMode.CgroupV1 };
        var results = modes.ToDictionary(m => m, _ => new List<double>());
        foreach (var mode in modes)
        {
            if (await RunAsync(mode, jobs / 4) is null)
            {
                results.Remove(mode); // not available here
            }
        }

        for (var round = 0; round < rounds; round++)
        {
            foreach (var (mode, list) in results)
            {
                list.Add((await RunAsync(mode, jobs))!.Value);
            }
        }

        var off = Median(results[ContainmentMode.Off]);
        foreach (var (mode, list) in results.Where(r => r.Key != ContainmentMode.Off))
        {
            var on = Median(list);
            report.Add($"containment {mode}: serial queue, {jobs} jobs of `true`", $"{F(on, 0)} jobs/s", $"{F(off, 0)} jobs/s (containment Off)",
                $"{F(on / off, 2)}×", "reported", null,
                $"{F((1000 / on) - (1000 / off), 2)} ms more per job (a cgroup made and removed, a /bin/sh stub exec'd before the command); rounds {string.Join("/", list.Select(v => F(v, 0)))}");
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
            own.Add((await RunAsync(ContainmentMode.Off, jobs))!.Value);
            other.Add((await RunAsync(ContainmentMode.Off, jobs, "nobody"))!.Value);
        }

        var (o, n) = (Median(own), Median(other));
        report.Add($"run as nobody: serial queue, {jobs} jobs of `true`", $"{F(n, 0)} jobs/s", $"{F(o, 0)} jobs/s (the host's own user)",
            $"{F(n / o, 2)}×", "reported", null, $"{F((1000 / n) - (1000 / o), 2)} ms more per job (setpriv exec'd before the command); rounds {string.Join("/", other.Select(v => F(v, 0)))}");
    }

    private static async Task<double?> RunAsync(ContainmentMode mode, int jobs, string? runAs = null)
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
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < jobs; i++)
            {
                await d.EnqueueAsync(new JobRequest($"c{i}", ["true"]) { Queue = "bench" });
            }

            await d.WaitForCompletionAsync($"c{jobs - 1}");
            sw.Stop();
            return jobs / sw.Elapsed.TotalSeconds;
        }
    }
}
