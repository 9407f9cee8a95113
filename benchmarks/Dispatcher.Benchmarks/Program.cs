using System.Diagnostics;
using Dispatcher.Benchmarks;

// Dispatcher benchmarks: every figure with its baseline, measured in this one run, written to benchmarks/RESULTS.md.
//   dotnet run -c Release --project benchmarks/Dispatcher.Benchmarks            (everything, about a minute on 2 cores)
//   dotnet run -c Release --project benchmarks/Dispatcher.Benchmarks -- quick   (fewer rounds, to try it out; writes nothing)
//   ... -- userpath fanout growth spawn                                         (only the named sections; writes nothing)
var quick = args.Contains("quick");
var only = args.Where(a => a != "quick").ToHashSet();
bool Run(string name) => only.Count == 0 || only.Contains(name);

var report = new Report();
var sw = Stopwatch.StartNew();
Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}");
if (only.Contains("profile"))
{
    // Not part of a full run: perf record of one user's-path round (extra arguments after "profile" go to the host).
    var rest = args.SkipWhile(a => a != "profile").Skip(1).ToArray();
    await UserPathProfile.RunAsync(1000, Environment.GetEnvironmentVariable("BENCH_PROFILE_DIR") is { Length: > 0 } dir ? dir : Path.Combine(Path.GetTempPath(), "dispatcher-profile"), rest);
    return;
}

if (only.Contains("warmup"))
{
    // Not part of a full run: host CPU per job over 12 successive rounds of one fresh host (how long the JIT tiers take; extra
    // arguments go to the host, BENCH_HOST=<dll> runs another build).
    await UserPathBenchmarks.WarmupCurveAsync(args.SkipWhile(a => a != "warmup").Skip(1).ToArray());
    return;
}

if (Run("userpath"))
{
    await UserPathBenchmarks.SerialAsync(report, jobs: quick ? 200 : 1000, rounds: quick ? 1 : 3);
}

if (Run("fanout"))
{
    await UserPathBenchmarks.FanOutAsync(report, jobs: quick ? 200 : 1000, quick ? [10, 100] : [10, 100, 1000]);
}

if (Run("growth"))
{
    await GrowthBenchmarks.PendingAsync(report, quick ? [1_000, 10_000] : [1_000, 10_000, 100_000]);
}

if (Run("spawn"))
{
    await SpawnBenchmarks.ThroughputAsync(report, jobs: quick ? 200 : 1000, rounds: quick ? 1 : 3);
}

if (Run("containment"))
{
    await ContainmentBenchmarks.SerialAsync(report, jobs: quick ? 100 : 200, rounds: quick ? 2 : 10);
    await ContainmentBenchmarks.SparseAsync(report, jobs: quick ? 20 : 50, rounds: quick ? 2 : 6, pause: TimeSpan.FromMilliseconds(50));
    await ContainmentBenchmarks.RunAsAsync(report, jobs: quick ? 200 : 1000, rounds: quick ? 1 : 3);
}

if (Run("latency"))
{
    await SpawnBenchmarks.LatencyAsync(report, samples: quick ? 50 : 300);
}

if (Run("list"))
{
    ListBenchmark.Run(report);
}

if (Run("transport"))
{
    await TransportBenchmarks.ListAsync(report, samples: quick ? 50 : 200);
}

if (Run("output"))
{
    await ResourceBenchmarks.OutputAsync(report);
}

if (Run("kill"))
{
    await ResourceBenchmarks.KillAsync(report, rounds: quick ? 2 : 5);
}

if (Run("events"))
{
    await TransportBenchmarks.EventsAsync(report, subscribers: quick ? 20 : 100, jobs: quick ? 200 : 1000);
}

if (Run("store"))
{
    await ResourceBenchmarks.StoreAsync(report, jobs: quick ? 500 : 2000);
}

if (Run("scheduling") || only.Contains("curve"))
{
    SchedulingBenchmarks.SchedulerCurve(report, operations: quick ? 20_000 : 200_000);
}

if (Run("scheduling"))
{
    await SchedulingBenchmarks.PendingMemoryAsync(report, jobs: quick ? 10_000 : 100_000);
    await SchedulingBenchmarks.RunTenThousandAsync(report, jobs: 10_000, rounds: quick ? 1 : 3);
    await SchedulingBenchmarks.ListHundredThousandAsync(report, samples: quick ? 5 : 20);
}

if (only.Contains("list100k"))
{
    // Not part of a full run (the scheduling section has it): the 100 000-job list alone, to profile.
    await SchedulingBenchmarks.ListHundredThousandAsync(report, samples: 40);
}

var markdown = report.ToMarkdown("dotnet run -c Release --project benchmarks/Dispatcher.Benchmarks" + (args.Length > 0 ? " -- " + string.Join(' ', args) : string.Empty), sw.Elapsed);
Console.WriteLine(markdown);
if (!quick && only.Count == 0)
{
    var dir = AppContext.BaseDirectory;
    while (dir is not null && !File.Exists(Path.Combine(dir, "Dispatcher.sln")))
    {
        dir = Path.GetDirectoryName(dir);
    }

    var path = Path.Combine(dir ?? ".", "benchmarks", "RESULTS.md");
    var analysis = Path.Combine(dir ?? ".", "benchmarks", "ANALYSIS.md");
    File.WriteAllText(path, markdown + (File.Exists(analysis) ? Environment.NewLine + File.ReadAllText(analysis) : string.Empty));
    Console.WriteLine($"written to {path}");
}
