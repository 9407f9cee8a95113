using System.Globalization;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests.FaultInjection;

/// <summary>
/// Issue 19, item 2: with a job's start and end written but not flushed one by one, kill -9 of the host in the middle of a
/// serial queue still loses no acknowledged job, and runs again only a job that ran in the last moment before the crash,
/// whose start the journal's writer had not yet written (README, Durability).
/// </summary>
public sealed class SerialCrashTests
{
    [Fact]
    public async Task KillDashNine_DuringASerialQueue_LosesNoJob_AndRunsNoFinishedJobAgain()
    {
        const int Jobs = 150;
        const int RecentJobs = 10;
        var data = Directory.CreateTempSubdirectory("fault-serial-").FullName;
        var runs = Path.Combine(data, "runs.txt");
        var jobs = new JsonObject();
        for (var i = 0; i < Jobs; i++)
        {
            jobs[$"s{i:000}"] = new JsonObject { ["commands"] = $"sh -c \"echo {i} >> {runs}; sleep 0.02\"", ["queue"] = "pkg_queue" };
        }

        await using (var host = await FaultHost.StartAsync(data))
        {
            Assert.Equal(Jobs, (await host.RunAsync(jobs)).Started.Count);

            // Crash while the queue runs: some jobs finished moments ago, one may be running, the rest wait.
            await FaultEnvironment.WaitUntilAsync(() => File.Exists(runs) && File.ReadAllLines(runs).Length >= Jobs / 3, "a third of the jobs ran");
            await host.CrashAsync();
        }

        var beforeCrash = File.ReadAllLines(runs);
        var ranBeforeCrash = beforeCrash.Length;
        await using (var again = await FaultHost.StartAsync(data))
        {
            await again.WaitUntilIdleAsync();
            var history = await again.HistoryAsync();
            await again.StopAsync();

            // Every acknowledged job is accounted for: it succeeded, or it was the one running at the crash (interrupted).
            Assert.Equal(Jobs, history.Count);
            var interrupted = history.Where(h => h.Value == "interrupted").Select(h => h.Key).ToList();
            Assert.True(interrupted.Count <= 1, $"interrupted: {string.Join(", ", interrupted)}");
            Assert.All(history.Where(h => h.Value != "interrupted"), h => Assert.Equal("succeeded", h.Value));

            // No job ran more than twice, and a job ran again only if it was among the last to run before the crash: its
            // start may not have been written yet (seen for up to 4 jobs of 20 ms on an overloaded machine). Any earlier job
            // had its start and end in the journal, and running it again would be a defect.
            var counts = File.ReadAllLines(runs).GroupBy(l => l).ToDictionary(g => g.Key, g => g.Count());
            var lastBeforeCrash = beforeCrash.TakeLast(RecentJobs).ToHashSet();
            Assert.All(counts, c => Assert.True(c.Value == 1 || (c.Value == 2 && lastBeforeCrash.Contains(c.Key)),
                $"job {c.Key} ran {c.Value} times (the last {RecentJobs} to run before the crash: {string.Join(", ", lastBeforeCrash)})"));
            Assert.Equal(Jobs - interrupted.Count, counts.Keys.Count(k => !interrupted.Contains($"s{int.Parse(k, CultureInfo.InvariantCulture):000}")));
            Assert.True(ranBeforeCrash < Jobs, "the crash came while the queue ran");
        }
    }
}
