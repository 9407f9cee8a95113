using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Dispatcher.Samples.Tests.FaultInjection;

/// <summary>
/// Issue 12: faults injected into a real sample host process (a crash by SIGKILL, a full disk, a read-only disk, a damaged,
/// CRLF or 2 GiB journal), each followed by what a client can check: no acknowledged job lost, no job run that was refused, no
/// process of an interrupted job left alive, no two jobs at once in a queue limited to one.
/// </summary>
[Collection(nameof(FaultInjectionTests))]
public sealed class FaultInjectionTests(ITestOutputHelper log)
{
    private static JsonObject Job(string command, string queue = "pkg_queue", bool rerun = false, JsonObject? env = null)
    {
        var job = new JsonObject { ["commands"] = command, ["queue"] = queue };
        if (rerun)
        {
            job["rerun_if_interrupted"] = true;
        }

        if (env is not null)
        {
            job["env"] = env;
        }

        return job;
    }

    [Theory]
    [InlineData("Auto")]
    [InlineData("Off")]
    public async Task KillDashNine_EndsWhatTheInterruptedJobLeftRunning_BeforeItsQueueRunsAgain(string containment)
    {
        // Auto: where cgroups are writable, the job's cgroup finds its processes. Off: the journal's process record (pid and
        // start time) finds the leader, and its session the rest.
        string[] mode = [$"--Dispatcher:Containment:Mode={containment}"];
        var data = Directory.CreateTempSubdirectory("fault-kill-").FullName;
        var runs = Path.Combine(data, "runs.txt");
        var lockFile = Path.Combine(data, "queue.lock");

        // The blocker holds a lock for as long as it runs (and leaves a second process in its session); a second copy of it
        // running at the same time cannot take the lock and says so.
        // Durations unique to this run: the test finds and finally kills its processes by command line across /proc, and a
        // second run of it on the same machine (another checkout's tests) must not be found or killed (seen: one run's
        // clean-up killed the other's blocker, which then never ran again).
        var tag = Random.Shared.Next(100_000, 1_000_000);
        var (kept, second) = ($"sleep 3111.{tag}", $"sleep 3112.{tag}");
        var blocker = $"sh -c \"{second} & flock -n {lockFile} sh -c 'echo run >> {runs}; exec {kept}' || echo overlap >> {runs}\"";
        try
        {
            List<int> leftBehind;
            await using (var host = await FaultHost.StartAsync(data, mode))
            {
                Assert.Equal(["blocker"], (await host.RunAsync(new JsonObject { ["blocker"] = Job(blocker, rerun: true) })).Started);
                var pending = new JsonObject();
                for (var i = 0; i < 50; i++)
                {
                    pending[$"p{i:00}"] = Job($"sh -c \"echo {i} >> {Path.Combine(data, "order.txt")}\"");
                }

                Assert.Equal(50, (await host.RunAsync(pending)).Started.Count);
                await FaultEnvironment.WaitUntilAsync(() => FaultEnvironment.Find(kept).Count == 1 && FaultEnvironment.Find(second).Count == 1, "the blocker runs");
                await host.CrashAsync();

                // A crash leaves the job's processes running: what the restart has to deal with.
                leftBehind = [.. FaultEnvironment.Find(kept), .. FaultEnvironment.Find(second)];
                Assert.Equal(2, leftBehind.Count);
            }

            await using (var again = await FaultHost.StartAsync(data, mode))
            {
                // The blocker runs again (it asked to), alone in its queue: it got the lock.
                await FaultEnvironment.WaitUntilAsync(() => File.ReadAllLines(runs).Length == 2, "the blocker ran again", again.Process);
                Assert.Equal(["run", "run"], File.ReadAllLines(runs));
                foreach (var pid in leftBehind)
                {
                    Assert.False(Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z", StringComparison.Ordinal), $"process {pid} of the interrupted job is still alive");
                }

                Assert.Contains("recovered 51 pending job(s)", again.Process.Output, StringComparison.Ordinal);

                // sh, flock, the sh it runs (now the kept sleep) and the second sleep.
                Assert.Contains("left 4 process(es) running", again.Process.Output, StringComparison.Ordinal);
                Assert.Single(FaultEnvironment.Find(kept));
                var active = await again.ActiveAsync();
                Assert.Equal(51, active.Count);
                Assert.Equal("blocker", active[0]);

                // No acknowledged job lost: all 50 run, in order, once the blocker is killed.
                await again.RpcAsync("""{"action":"kill","job_id":["blocker"]}""");
                await again.WaitUntilIdleAsync();
                Assert.Equal(Enumerable.Range(0, 50).Select(i => i.ToString(CultureInfo.InvariantCulture)), File.ReadAllLines(Path.Combine(data, "order.txt")));
                await again.StopAsync();
            }

            Report.Add($"kill -9 of the host with a job running and 50 pending (containment {containment})", "1 crash, 4 leftover processes ended before the queue ran again, 0 overlaps, 0 of 51 jobs lost");
        }
        finally
        {
            FaultEnvironment.KillAll(kept);
            FaultEnvironment.KillAll(second);
        }
    }

    [Fact]
    public async Task DiskFull_RejectsEachJobWithTheReason_RunsNoneOfThem_AndLosesNoAcknowledgedJob()
    {
        var (mount, why) = FaultEnvironment.TryMountTmpfs("4m");
        if (mount is null)
        {
            log.WriteLine($"Could not create a small file system, so no real disk-full was injected: {why}");
            return;
        }

        var markers = Directory.CreateTempSubdirectory("fault-full-").FullName;
        try
        {
            var data = Path.Combine(mount, "data");
            var bigEnv = new JsonObject { ["PAD"] = new string('p', 6000) }; // each record needs a page of its own
            string filler;
            await using (var host = await FaultHost.StartAsync(data))
            {
                // "a" is acknowledged, then finishes while the disk is full: its result (6000 characters of output, more than the
                // journal's last page can hold) cannot be written at that moment.
                var go = Path.Combine(markers, "go");
                Assert.Equal(["a"], (await host.RunAsync(new JsonObject { ["a"] = Job($"sh -c \"while [ ! -e {go} ]; do sleep 0.05; done; yes x | head -c 6000\"", "no_queue") })).Started);
                filler = FaultEnvironment.Fill(mount);
                File.WriteAllText(go, string.Empty);
                await FaultEnvironment.WaitUntilAsync(() => host.Process.Output.Contains("JournalWriteFailed", StringComparison.Ordinal)
                    || host.Process.Output.Contains("Writing the job journal", StringComparison.Ordinal), "the result of a could not be written");

                var jobs = new JsonObject();
                for (var i = 0; i < 10; i++)
                {
                    jobs[$"full{i}"] = Job($"touch {markers}/full{i}", "no_queue", env: bigEnv.DeepClone().AsObject());
                }

                var (started, rejected) = await host.RunAsync(jobs);
                log.WriteLine($"started: {string.Join(",", started)}; rejected: {string.Join(" | ", rejected.Select(r => r.Key + ": " + r.Value))}");
                Assert.Empty(started);
                Assert.Equal(10, rejected.Count);
                Assert.All(rejected.Values, reason => Assert.Contains("the storage is full", reason, StringComparison.Ordinal));

                // Space again: the next job is accepted and runs; the refused ones never ran and are nowhere.
                File.Delete(filler);
                Assert.Equal(["b"], (await host.RunAsync(new JsonObject { ["b"] = Job($"touch {markers}/b", "no_queue", env: bigEnv.DeepClone().AsObject()) })).Started);
                await host.WaitUntilIdleAsync();
                Assert.True(File.Exists(Path.Combine(markers, "b")));
                Assert.Empty(Directory.GetFiles(markers, "full*"));
                var history = await host.HistoryAsync();
                Assert.DoesNotContain(history.Keys, k => k.StartsWith("full", StringComparison.Ordinal));
                Assert.Equal("succeeded", history["a"]);
                await host.CrashAsync();
            }

            await using (var again = await FaultHost.StartAsync(data))
            {
                var history = await again.HistoryAsync();
                // The result of "a" was written back once the disk had room (the journal is rewritten after a failed write).
                Assert.Equal("succeeded", history["a"]);
                Assert.Equal("succeeded", history["b"]);
                Assert.DoesNotContain(history.Keys, k => k.StartsWith("full", StringComparison.Ordinal));
                await again.StopAsync();
            }

            Report.Add("disk full (4 MiB tmpfs filled)", "10 jobs rejected with \"the storage is full\", 0 of them ran; 2 of 2 acknowledged jobs kept across a kill -9, with the result that finished while the disk was full");
        }
        finally
        {
            FaultEnvironment.Unmount(mount);
        }
    }

    [Fact]
    public async Task ReadOnlyStorage_TheHostStarts_RejectsJobsAsReadOnly_AndKeepsItsHistory()
    {
        var (mount, why) = FaultEnvironment.TryMountTmpfs("8m");
        if (mount is null)
        {
            log.WriteLine($"Could not mount a file system to make read-only: {why}");
            return;
        }

        var markers = Directory.CreateTempSubdirectory("fault-ro-").FullName;
        try
        {
            var data = Path.Combine(mount, "data");
            await using (var host = await FaultHost.StartAsync(data))
            {
                Assert.Equal(["before"], (await host.RunAsync(new JsonObject { ["before"] = Job("true", "no_queue") })).Started);
                await host.WaitUntilIdleAsync();
                await host.StopAsync();
            }

            Assert.True(FaultEnvironment.Remount(mount, "ro"), "remount read-only");
            await using (var host = await FaultHost.StartAsync(data))
            {
                var (started, rejected) = await host.RunAsync(new JsonObject
                {
                    ["ro1"] = Job($"touch {markers}/ro1", "no_queue"),
                    ["ro2"] = Job($"touch {markers}/ro2", "pkg_queue"),
                });
                Assert.Empty(started);
                Assert.All(rejected.Values, reason => Assert.Contains("read-only", reason, StringComparison.Ordinal));
                Assert.Equal("succeeded", (await host.HistoryAsync())["before"]);
                await Task.Delay(500); // nothing to await: a refused job must never start, so give it the chance to
                Assert.Empty(Directory.GetFiles(markers));
                await host.StopAsync();
            }

            Report.Add("read-only storage (tmpfs remounted ro)", "host started, 2 jobs rejected with \"read-only\", 0 ran, history kept");
        }
        finally
        {
            FaultEnvironment.Unmount(mount);
        }
    }

    [Fact]
    public async Task DamagedAndCrLfJournal_TheHostKeepsEveryGoodRecord_AndSaysWhereTheDamageWas()
    {
        var data = Directory.CreateTempSubdirectory("fault-damage-").FullName;
        var order = Path.Combine(data, "order.txt");
        await using (var host = await FaultHost.StartAsync(data))
        {
            Assert.Single((await host.RunAsync(new JsonObject { ["blocker"] = Job("sleep 3113") })).Started);
            var jobs = new JsonObject();
            for (var i = 0; i < 100; i++)
            {
                jobs[$"d{i:000}"] = Job($"sh -c \"echo {i} >> {order}\"");
            }

            Assert.Equal(100, (await host.RunAsync(jobs)).Started.Count);
            await host.StopAsync();
        }

        // One flipped bit in the third pending job's record, and every line end turned into CRLF.
        var journal = Path.Combine(data, "jobs.journal");
        var bytes = File.ReadAllBytes(journal);
        var at = Encoding.UTF8.GetString(bytes).IndexOf("\"d002\"", StringComparison.Ordinal);
        bytes[at + 1] ^= 0x01;
        File.WriteAllText(journal, Encoding.UTF8.GetString(bytes).Replace("\n", "\r\n", StringComparison.Ordinal));

        await using (var again = await FaultHost.StartAsync(data))
        {
            Assert.Contains("recovered 99 pending job(s)", again.Process.Output, StringComparison.Ordinal);
            Assert.Contains("is damaged at byte", again.Process.Output, StringComparison.Ordinal);
            await again.WaitUntilIdleAsync();
            Assert.Equal(Enumerable.Range(0, 100).Where(i => i != 2).Select(i => i.ToString(CultureInfo.InvariantCulture)), File.ReadAllLines(order));
            Assert.Single(Directory.GetFiles(data, "jobs.journal.damaged-*"));
            await again.StopAsync();
        }

        Report.Add("journal with 1 flipped bit and CRLF line ends", "99 of 99 intact jobs recovered and run in order; the damaged record moved aside");
    }

    [Fact]
    public async Task JournalOver2GiB_IsStreamed_TheHostStartsWithBoundedMemory()
    {
        var data = Directory.CreateTempSubdirectory("fault-huge-").FullName;
        var order = Path.Combine(data, "order.txt");
        await using (var host = await FaultHost.StartAsync(data))
        {
            Assert.Single((await host.RunAsync(new JsonObject { ["blocker"] = Job("sleep 3114") })).Started);
            var jobs = new JsonObject();
            for (var i = 0; i < 10; i++)
            {
                jobs[$"h{i}"] = Job($"sh -c \"echo {i} >> {order}\"");
            }

            Assert.Equal(10, (await host.RunAsync(jobs)).Started.Count);
            await host.StopAsync();
        }

        // Half the records, then a 2.2 GB run of zero bytes (a sparse hole: it costs no disk), then the other half: good
        // records past the 2 GiB mark, and one "line" far longer than any record.
        var journal = Path.Combine(data, "jobs.journal");
        var lines = File.ReadAllLines(journal);
        var hole = 2_200_000_000L;
        using (var file = new FileStream(journal, FileMode.Create, FileAccess.Write))
        {
            var head = Encoding.UTF8.GetBytes(string.Join('\n', lines[..6]) + "\n");
            file.Write(head);
            file.Position = head.Length + hole;
            file.Write(Encoding.UTF8.GetBytes("\n" + string.Join('\n', lines[6..]) + "\n"));
        }

        Assert.True(new FileInfo(journal).Length > 2L << 30);
        await using (var again = await FaultHost.StartAsync(data))
        {
            await again.WaitUntilIdleAsync();
            Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString(CultureInfo.InvariantCulture)), File.ReadAllLines(order));
            var peak = again.PeakResidentBytes();
            log.WriteLine($"peak resident memory of the host after reading a {new FileInfo(journal).Length} byte journal: {peak >> 20} MiB");
            Assert.True(peak < 600L << 20, $"peak resident memory {peak >> 20} MiB");
            await again.StopAsync();
            Report.Add("journal of 2.2 GB (sparse)", $"host started, 10 of 10 jobs recovered, peak RSS {peak >> 20} MiB");
        }

        Assert.True(new FileInfo(journal).Length < 1 << 20, "the journal is compacted after recovery");
    }
}

/// <summary>What the suite measured, printed for the README's "Reliability and security" table.</summary>
internal static class Report
{
    public static void Add(string fault, string outcome) =>
        Console.WriteLine($"FAULT-REPORT | {fault} | {outcome} |");
}
