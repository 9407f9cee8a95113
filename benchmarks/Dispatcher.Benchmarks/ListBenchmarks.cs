using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using static Dispatcher.Benchmarks.Stats;

namespace Dispatcher.Benchmarks;

/// <summary>IDispatcher.List() with 10 000 pending jobs, measured by BenchmarkDotNet (in process) with its memory diagnoser.</summary>
[MemoryDiagnoser]
public class ListBenchmark
{
    private BenchDispatcher? _bench;

    [GlobalSetup]
    public void Setup()
    {
        _bench = new BenchDispatcher();
        _bench.Dispatcher.EnqueueAsync(new JobRequest("blocker", ["sleep 3600"]) { Queue = DispatcherQueues.PkgQueue }).AsTask().GetAwaiter().GetResult();
        for (var i = 0; i < 10_000; i++)
        {
            _bench.Dispatcher.EnqueueAsync(new JobRequest($"p{i}", ["pkg install -y misc/pcbsd-meta-mate"]) { Queue = DispatcherQueues.PkgQueue }).AsTask().GetAwaiter().GetResult();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bench!.Dispatcher.KillAsync(_bench.Dispatcher.List().Select(j => j.Id)).AsTask().GetAwaiter().GetResult();
        _bench.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark]
    public int List() => _bench!.Dispatcher.List().Count;

    internal static void Run(Report report)
    {
        var config = ManualConfig.CreateMinimumViable()
            .AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance))
            .WithOptions(ConfigOptions.DisableLogFile);
        var summary = BenchmarkRunner.Run<ListBenchmark>(config);
        var r = summary.Reports.Single();
        var medianMs = r.ResultStatistics!.Median / 1_000_000;
        var allocated = r.GcStats.GetBytesAllocatedPerOperation(r.BenchmarkCase) ?? 0;
        report.Add("`List()` with 10 000 pending jobs", $"{F(medianMs, 3)} ms, {allocated / 1024} KiB allocated per call", "—", "—", "≤ 2 ms p50",
            medianMs <= 2, "BenchmarkDotNet ShortRun, in process, MemoryDiagnoser");
    }
}
