using System.Globalization;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests.FaultInjection;

/// <summary>
/// Issue 19, item 2: with a job's start and end written but not flushed one by one, kill -9 of the host in the middle of a
/// serial queue loses no acknowledged job and runs no job twice: a job's start record is in the journal file before its
/// process is spawned (README, Durability). Before that, the start was handed to the journal's writer without waiting, and
/// the last jobs before the crash (up to 4 of 20 ms on an overloaded machine) ran again after the restart.
/// </summary>
public sealed class SerialCrashTests
{
    [Fact]
    public async Task KillDashNine_DuringASerialQueue_LosesNoJob_AndRunsNoJobTwice()
    {
        const int Jobs = 150;
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

            // No job ran twice: every job that ran before the crash had its start in the journal before its process existed.
            var counts = File.ReadAllLines(runs).GroupBy(l => l).ToDictionary(g => g.Key, g => g.Count());
            Assert.All(counts, c => Assert.True(c.Value == 1,
                $"job {c.Key} ran {c.Value} times (the last jobs to run before the crash: {string.Join(", ", beforeCrash.TakeLast(10))})"));
            Assert.Equal(Jobs - interrupted.Count, counts.Keys.Count(k => !interrupted.Contains($"s{int.Parse(k, CultureInfo.InvariantCulture):000}")));
            Assert.True(ranBeforeCrash < Jobs, "the crash came while the queue ran");
        }
    }
}
