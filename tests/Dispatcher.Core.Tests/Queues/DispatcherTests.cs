using System.Collections.Concurrent;
using System.Diagnostics;

namespace Dispatcher.Tests.Queues;

public sealed class DispatcherTests
{
    [Fact]
    public async Task LimitedQueue_RunsFifo_NeverTwoAtOnce()
    {
        await using var t = new TestDispatcher();
        var log = t.PathOf("log");
        for (var i = 0; i < 5; i++)
        {
            await t.RunInAsync(DispatcherQueues.PkgQueue, $"job{i}", $"sh -c \"echo start {i} >> {log}; sleep 0.05; echo end {i} >> {log}\"");
        }

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync($"job{i}")).Outcome);
        }

        var expected = Enumerable.Range(0, 5).SelectMany(i => new[] { $"start {i}", $"end {i}" });
        Assert.Equal(expected, File.ReadAllLines(log));
    }

    [Fact]
    public async Task List_ShowsRunningThenPending_WithPositions()
    {
        await using var t = new TestDispatcher();
        var a = await t.RunInAsync(DispatcherQueues.PkgQueue, "a", "sleep 300");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "b", "true");
        var c = await t.RunInAsync(DispatcherQueues.PkgQueue, "c", "true", "true");
        var d = await t.RunAsync("d", "sleep 300");

        // What an enqueue returns: where the job stood at that moment.
        Assert.Equal((JobState.Running, (int?)0), (a.State, a.QueuePosition));
        Assert.Equal((JobState.Pending, (int?)2), (c.State, c.QueuePosition));
        Assert.Equal((JobState.Running, (int?)null), (d.State, d.QueuePosition));

        var list = t.Dispatcher.List();

        Assert.Equal(["d", "a", "b", "c"], list.Select(j => j.Id));
        Assert.Equal([null, 0, 1, 2], list.Select(j => j.QueuePosition));
        Assert.Equal([JobState.Running, JobState.Running, JobState.Pending, JobState.Pending], list.Select(j => j.State));
        Assert.Equal(["true", "true"], list[3].Commands);
        Assert.Equal(["a", "b", "c", "d"], (await t.Dispatcher.KillAsync(["a", "b", "c", "d"])).Order());
    }

    [Fact]
    public async Task NoQueue_RunsJobsInParallel()
    {
        await using var t = new TestDispatcher();
        var dir = t.PathOf("parallel");
        Directory.CreateDirectory(dir);
        // Each job succeeds only when all three are running at the same time.
        const string wait = "for n in $(seq 1000); do [ $(ls {0} | wc -l) -ge 3 ] && exit 0; sleep 0.01; done; exit 1";
        for (var i = 0; i < 3; i++)
        {
            await t.RunAsync($"p{i}", $"sh -c \"touch {dir}/{i}; {string.Format(wait, dir)}\"");
        }

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync($"p{i}")).Outcome);
        }
    }

    [Fact]
    public async Task FirstFailingCommand_EndsTheJob()
    {
        await using var t = new TestDispatcher();
        var marker = t.PathOf("marker");
        await t.RunAsync("f", "echo one", "sh -c \"echo two; exit 3\"", $"touch {marker}");

        var result = await t.WaitAsync("f");

        Assert.Equal(JobOutcome.Failed, result.Outcome);
        Assert.Equal(1, result.FailedCommand);
        Assert.Equal(3, result.ExitCode);
        Assert.Equal(2, result.CommandResults.Count);
        Assert.Equal("one\n", result.CommandResults[0].Output);
        Assert.Equal(0, result.CommandResults[0].ExitCode);
        Assert.Equal("two\n", result.CommandResults[1].Output);
        Assert.False(File.Exists(marker));
        Assert.Equal(3, result.Commands.Count);
    }

    [Fact]
    public async Task SameCommandTwice_KeepsSeparateResults()
    {
        await using var t = new TestDispatcher();
        var counter = t.PathOf("n");
        await t.RunAsync("twice", $"sh -c \"echo x >> {counter}; wc -l < {counter}\"", $"sh -c \"echo x >> {counter}; wc -l < {counter}\"");

        var result = await t.WaitAsync("twice");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal(["1", "2"], result.CommandResults.Select(c => c.Output.Trim()));
        Assert.All(result.CommandResults, c => Assert.True(c.FinishedAt >= c.StartedAt));
    }

    [Fact]
    public async Task KilledPendingJob_NeverRuns()
    {
        await using var t = new TestDispatcher();
        var marker = t.PathOf("marker");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "blocker", "sleep 300");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "victim", $"touch {marker}");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "after", "true");

        Assert.Equal(["victim"], await t.Dispatcher.KillAsync(["victim", "no-such-job"]));
        Assert.Equal(["blocker"], await t.Dispatcher.KillAsync(["blocker"]));

        var victim = await t.WaitAsync("victim");
        Assert.Equal(JobOutcome.Killed, victim.Outcome);
        Assert.Null(victim.StartedAt);
        Assert.Empty(victim.CommandResults);
        Assert.Equal(JobOutcome.Killed, (await t.WaitAsync("blocker")).Outcome);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("after")).Outcome);
        Assert.False(File.Exists(marker));
        Assert.Empty(await t.Dispatcher.KillAsync(["victim", "blocker"]));
    }

    [Fact]
    public async Task KillRunning_StopsTheWholeTreeGracefully()
    {
        await using var t = new TestDispatcher(o => o.KillGracePeriod = TimeSpan.FromSeconds(20));
        var marker = t.PathOf("after");
        await t.RunAsync("tree", "sh -c \"sleep 3001 & sleep 3001\"", $"touch {marker}");
        await ProcessProbe.WaitUntilAsync(() => ProcessProbe.Find("sleep 3001").Count == 2, "both sleeps run");

        var stopwatch = Stopwatch.StartNew();
        Assert.Equal(["tree"], await t.Dispatcher.KillAsync(["tree"]));
        var result = await t.WaitAsync("tree");

        // SIGTERM reached the whole group: nothing waited for the 20 s SIGKILL.
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(15), $"kill took {stopwatch.Elapsed}");
        Assert.Equal(JobOutcome.Killed, result.Outcome);
        Assert.Single(result.CommandResults);
        Assert.Equal(128 + 15, result.ExitCode);
        await ProcessProbe.WaitUntilAsync(() => ProcessProbe.Find("sleep 3001").Count == 0, "no sleep is left");
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public async Task KillRunning_ForcefullyKillsWhatIgnoresSigterm_IncludingDoubleForked()
    {
        await using var t = new TestDispatcher(o => o.KillGracePeriod = TimeSpan.FromMilliseconds(300));
        // The subshell forks a sleep and exits, so that sleep is re-parented away from the job's tree; all ignore SIGTERM.
        await t.RunAsync("stubborn", "sh -c \"trap '' TERM; (sleep 3002 &); sleep 3003\"");
        await ProcessProbe.WaitUntilAsync(
            () => ProcessProbe.Find("sleep 3002").Count == 1 && ProcessProbe.Find("sleep 3003").Count == 1, "both sleeps run");

        await t.Dispatcher.KillAsync(["stubborn"]);
        var result = await t.WaitAsync("stubborn");

        Assert.Equal(JobOutcome.Killed, result.Outcome);
        Assert.Equal(128 + 9, result.ExitCode);
        await ProcessProbe.WaitUntilAsync(
            () => ProcessProbe.Find("sleep 3002").Count == 0 && ProcessProbe.Find("sleep 3003").Count == 0, "no sleep is left");
    }

    [Fact]
    public async Task Timeout_KillsTheJob()
    {
        await using var t = new TestDispatcher();
        await t.Dispatcher.EnqueueAsync(new JobRequest("slow", ["sleep 3004"]) { Timeout = TimeSpan.FromMilliseconds(200) });

        var result = await t.WaitAsync("slow");

        Assert.Equal(JobOutcome.TimedOut, result.Outcome);
        await ProcessProbe.WaitUntilAsync(() => ProcessProbe.Find("sleep 3004").Count == 0, "no sleep is left");
    }

    [Fact]
    public async Task MissingProgram_FailsWithClearMessage_AndDispatcherCarriesOn()
    {
        await using var t = new TestDispatcher();
        await t.RunAsync("missing", "no-such-program-4711 --flag");
        await t.RunAsync("relative", "./nope/not-here");
        await t.RunAsync("fine", "true");

        var missing = await t.WaitAsync("missing");
        Assert.Equal(JobOutcome.Failed, missing.Outcome);
        Assert.Equal(127, missing.ExitCode);
        Assert.Contains("no-such-program-4711", missing.CommandResults[0].Output, StringComparison.Ordinal);
        Assert.Contains("PATH", missing.CommandResults[0].Output, StringComparison.Ordinal);
        Assert.Equal(127, (await t.WaitAsync("relative")).ExitCode);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("fine")).Outcome);
    }

    [Fact]
    public async Task WorkingDirectoryAndEnvironment_ReachTheCommand()
    {
        await using var t = new TestDispatcher();
        await t.Dispatcher.EnqueueAsync(new JobRequest("env", ["sh -c \"pwd; echo $GREETING\""])
        {
            WorkingDirectory = t.Directory,
            Environment = new Dictionary<string, string> { ["GREETING"] = "hello there" },
        });

        var result = await t.WaitAsync("env");

        Assert.Equal($"{t.Directory}\nhello there\n", result.CommandResults[0].Output);
    }

    [Fact]
    public async Task NoShell_MetacharactersAreArguments()
    {
        await using var t = new TestDispatcher();
        await t.RunAsync("meta", "echo a | b; $HOME");

        Assert.Equal("a | b; $HOME\n", (await t.WaitAsync("meta")).CommandResults[0].Output);
    }

    [Fact]
    public async Task Output_IsBounded_KeepingTheTail()
    {
        await using var t = new TestDispatcher(o => o.MaxOutputCharacters = 4096);
        await t.RunAsync("loud", "sh -c \"head -c 1000000 /dev/zero | tr '\\0' x; echo END\"");

        var output = (await t.WaitAsync("loud")).CommandResults[0];

        Assert.Equal(1_000_004 - 4096, output.DroppedOutputCharacters);
        Assert.EndsWith("xxxxxxxxxxEND\n", output.Output, StringComparison.Ordinal);
        Assert.StartsWith($"[dispatcher: {1_000_004 - 4096} earlier characters", output.Output, StringComparison.Ordinal);
        Assert.True(output.Output.Length < 4096 + 100);
    }

    [Fact]
    public async Task Output_BoundSpansCommands()
    {
        await using var t = new TestDispatcher(o => o.MaxOutputCharacters = 1024);
        await t.RunAsync("two", "sh -c \"head -c 1000 /dev/zero | tr '\\0' a\"", "sh -c \"head -c 1000 /dev/zero | tr '\\0' b\"");

        var result = await t.WaitAsync("two");

        Assert.Equal(976, result.CommandResults[0].DroppedOutputCharacters);
        Assert.EndsWith(new string('a', 24), result.CommandResults[0].Output, StringComparison.Ordinal);
        Assert.Equal(new string('b', 1000), result.CommandResults[1].Output);
    }

    [Fact]
    public async Task Rejections_ChangeNothing()
    {
        await using var t = new TestDispatcher();
        await t.RunInAsync(DispatcherQueues.PkgQueue, "dup", "sleep 300");
        var before = t.Dispatcher.List().Select(j => j.Id).ToArray();

        var duplicate = await Assert.ThrowsAsync<JobRejectedException>(() => t.RunAsync("dup", "true"));
        Assert.Equal(JobRejectionReason.DuplicateId, duplicate.Reason);
        Assert.Contains("'dup'", duplicate.Message, StringComparison.Ordinal);
        var unknown = await Assert.ThrowsAsync<JobRejectedException>(() => t.RunInAsync("nope_queue", "x", "true"));
        Assert.Equal(JobRejectionReason.UnknownQueue, unknown.Reason);
        Assert.Contains("pkg_queue", unknown.Message, StringComparison.Ordinal);
        Assert.Equal(JobRejectionReason.NoCommands, (await Assert.ThrowsAsync<JobRejectedException>(() => t.RunAsync("none"))).Reason);
        Assert.Equal(JobRejectionReason.InvalidRequest, (await Assert.ThrowsAsync<JobRejectedException>(() => t.RunAsync("blank", "true", "  "))).Reason);
        Assert.Equal(JobRejectionReason.InvalidRequest, (await Assert.ThrowsAsync<JobRejectedException>(() => t.RunAsync("", "true"))).Reason);

        Assert.Equal(before, t.Dispatcher.List().Select(j => j.Id));
        Assert.Null(t.Dispatcher.GetResult("x"));
        await Assert.ThrowsAsync<JobNotFoundException>(() => t.Dispatcher.WaitForCompletionAsync("x"));
    }

    [Fact]
    public async Task FinishedId_CanBeReused_AndResultsAreRetainedByCount()
    {
        await using var t = new TestDispatcher(o => o.RetainedJobCount = 2);
        await t.RunAsync("r", "echo first");
        Assert.Equal("first\n", (await t.WaitAsync("r")).CommandResults[0].Output);
        await t.RunAsync("r", "echo second");
        Assert.Equal("second\n", (await t.WaitAsync("r")).CommandResults[0].Output);
        await t.RunAsync("s", "true");
        await t.WaitAsync("s");
        await t.RunAsync("u", "true");
        await t.WaitAsync("u");

        Assert.Null(t.Dispatcher.GetResult("r"));
        Assert.NotNull(t.Dispatcher.GetResult("s"));
        Assert.NotNull(t.Dispatcher.GetResult("u"));
    }

    [Fact]
    public async Task Stop_InterruptsRunningAndPending_AndRejectsNewJobs()
    {
        var t = new TestDispatcher(o => o.KillGracePeriod = TimeSpan.FromMilliseconds(500));
        await t.RunInAsync(DispatcherQueues.PkgQueue, "running", "sleep 3005");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "waiting", "true");
        using var events = t.Dispatcher.Subscribe();

        await t.Dispatcher.StopAsync().WaitAsync(TestDispatcher.Patience);

        Assert.Equal(JobOutcome.Interrupted, t.Dispatcher.GetResult("running")!.Outcome);
        Assert.Equal(JobOutcome.Interrupted, t.Dispatcher.GetResult("waiting")!.Outcome);
        var rejected = await Assert.ThrowsAsync<JobRejectedException>(() => t.RunAsync("late", "true"));
        Assert.Equal(JobRejectionReason.ShuttingDown, rejected.Reason);
        Assert.Empty(ProcessProbe.Find("sleep 3005"));
        var finished = new List<string>();
        await foreach (var e in events.ReadAllAsync())
        {
            if (e is global::Dispatcher.Events.JobFinishedEvent f)
            {
                finished.Add(f.JobId);
            }
        }

        Assert.Equal(["running", "waiting"], finished.Order());
        await t.DisposeAsync();
    }

    [Fact]
    public async Task Stress_ManyThreadsMixingEnqueueKillList_AccountsForEveryJob()
    {
        await using var t = new TestDispatcher(o => { o.RetainedJobCount = 100_000; o.EventBufferCapacity = 100_000; });
        using var events = t.Dispatcher.Subscribe();
        var accepted = new ConcurrentBag<string>();
        var rejected = 0;
        var threads = Enumerable.Range(0, 16).Select(thread => Task.Run(async () =>
        {
            var random = new Random(thread);
            for (var op = 0; op < 150; op++)
            {
                var id = $"s{random.Next(400)}";
                switch (random.Next(3))
                {
                    case 0:
                        try
                        {
                            var queue = random.Next(2) == 0 ? DispatcherQueues.NoQueue : DispatcherQueues.PkgQueue;
                            await t.RunInAsync(queue, id, random.Next(4) == 0 ? "sleep 0.05" : "true");
                            accepted.Add(id);
                        }
                        catch (JobRejectedException ex) when (ex.Reason == JobRejectionReason.DuplicateId)
                        {
                            Interlocked.Increment(ref rejected);
                        }

                        break;
                    case 1:
                        await t.Dispatcher.KillAsync([id, $"s{random.Next(400)}"]);
                        break;
                    default:
                        Assert.All(t.Dispatcher.List(), j => Assert.NotEqual(JobState.Finished, j.State));
                        break;
                }
            }
        })).ToArray();
        await Task.WhenAll(threads).WaitAsync(TimeSpan.FromMinutes(2));

        await ProcessProbe.WaitUntilAsync(() => t.Dispatcher.List().Count == 0, "every job finished");
        var finished = new Dictionary<string, int>();
        while (events.Events.TryRead(out var e))
        {
            if (e is global::Dispatcher.Events.JobFinishedEvent f)
            {
                finished[f.JobId] = finished.GetValueOrDefault(f.JobId) + 1;
            }
        }

        Assert.Equal(accepted.Count, finished.Values.Sum());
        Assert.Equal(accepted.Distinct().Order(), finished.Keys.Order());
        Assert.All(accepted.Distinct(), id => Assert.NotNull(t.Dispatcher.GetResult(id)));
        Assert.True(accepted.Count > 100, $"only {accepted.Count} jobs were accepted");
    }

    [Fact]
    public async Task Commands_StartWithDefaultSignalDispositions()
    {
        await using var t = new TestDispatcher();
        await t.RunAsync("sig", "grep SigIgn /proc/self/status");

        var output = (await t.WaitAsync("sig")).CommandResults[0].Output;

        // SIGPIPE (bit 13) must not be inherited as ignored, or `yes | head` style pipelines never end by the signal.
        var mask = Convert.ToUInt64(output.Split(':')[1].Trim(), 16);
        Assert.Equal(0UL, mask & (1UL << 12));
    }
}
