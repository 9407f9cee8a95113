using Microsoft.Extensions.Time.Testing;

namespace Dispatcher.Tests.Scheduling;

/// <summary>The scheduling features through <see cref="IDispatcher"/>, with real processes; a fake clock where time is the subject.</summary>
public sealed class SchedulingDispatcherTests
{
    private static readonly DateTimeOffset Start = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Priorities_HigherFirst_FifoAmongEqual_ProvenByAnOrderFile()
    {
        await using var t = new TestDispatcher();
        var order = t.PathOf("order");
        var gate = t.PathOf("gate");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "blocker", $"sh -c \"while [ ! -e {gate} ]; do sleep 0.01; done\"");
        foreach (var (id, priority) in new[] { ("low", -1), ("mid1", 0), ("high", 10), ("mid2", 0), ("top", 20) })
        {
            await t.Dispatcher.EnqueueAsync(new JobRequest(id, [$"sh -c \"echo {id} >> {order}\""]) { Queue = DispatcherQueues.PkgQueue, Priority = priority });
        }

        Assert.Equal(["blocker", "top", "high", "mid1", "mid2", "low"], t.Dispatcher.List().Where(j => j.Queue == DispatcherQueues.PkgQueue).Select(j => j.Id));
        File.WriteAllText(gate, string.Empty);
        await t.WaitAsync("low");

        Assert.Equal(["top", "high", "mid1", "mid2", "low"], File.ReadAllLines(order));
    }

    [Fact]
    public async Task After_StartsOnlyWhenAllSucceeded_AndSkipsWhenOneFails()
    {
        await using var t = new TestDispatcher();
        var order = t.PathOf("order");
        var marker = t.PathOf("never");
        await t.RunAsync("slow", $"sh -c \"sleep 0.3; echo slow >> {order}\"");
        await t.RunAsync("fast", $"sh -c \"echo fast >> {order}\"");
        await t.RunAsync("bad", "sh -c \"sleep 0.1; exit 3\"");
        await t.Dispatcher.EnqueueAsync(new JobRequest("joined", [$"sh -c \"echo joined >> {order}\""]) { After = ["slow", "fast"] });
        var waiting = await t.Dispatcher.EnqueueAsync(new JobRequest("skipped", [$"touch {marker}"]) { After = ["slow", "bad"] });
        await t.Dispatcher.EnqueueAsync(new JobRequest("skipped-too", [$"touch {marker}"]) { After = ["skipped"] });

        Assert.Equal(JobState.Pending, waiting.State);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("joined")).Outcome);
        var skipped = await t.WaitAsync("skipped");
        Assert.Equal(JobOutcome.Skipped, skipped.Outcome);
        Assert.Null(skipped.StartedAt);
        Assert.Equal(JobOutcome.Skipped, (await t.WaitAsync("skipped-too")).Outcome);
        Assert.Equal(["fast", "slow", "joined"], File.ReadAllLines(order));
        Assert.False(File.Exists(marker));

        // A dependency that already failed: skipped at once. One that never existed: refused.
        Assert.Equal(JobOutcome.Skipped, (await EnqueueAndWait(t, new JobRequest("late", [$"touch {marker}"]) { After = ["bad"] })).Outcome);
        var unknown = await Assert.ThrowsAsync<JobRejectedException>(() => t.Dispatcher.EnqueueAsync(new JobRequest("x", ["true"]) { After = ["ghost"] }).AsTask());
        Assert.Equal(JobRejectionReason.UnknownDependency, unknown.Reason);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public async Task KilledDependency_SkipsTheDependent()
    {
        await using var t = new TestDispatcher();
        var marker = t.PathOf("never");
        await t.RunAsync("victim", "sleep 3011");
        await t.Dispatcher.EnqueueAsync(new JobRequest("dependent", [$"touch {marker}"]) { After = ["victim"] });

        await t.Dispatcher.KillAsync(["victim"]);

        Assert.Equal(JobOutcome.Skipped, (await t.WaitAsync("dependent")).Outcome);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public async Task PausedQueue_HoldsPendingJobs_RunningGoOn_ResumeStartsThem()
    {
        await using var t = new TestDispatcher();
        var gate = t.PathOf("gate");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "running", $"sh -c \"while [ ! -e {gate} ]; do sleep 0.01; done\"");
        var paused = await t.Dispatcher.PauseQueueAsync(DispatcherQueues.PkgQueue);
        await t.RunInAsync(DispatcherQueues.PkgQueue, "held", "true");
        File.WriteAllText(gate, string.Empty);

        Assert.True(paused.Paused);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("running")).Outcome);
        await t.RunAsync("elsewhere", "true");
        await t.WaitAsync("elsewhere");
        Assert.Equal(JobState.Pending, Assert.Single(t.Dispatcher.List(), j => j.Id == "held").State);
        var queue = Assert.Single(t.Dispatcher.GetQueues(), q => q.Name == DispatcherQueues.PkgQueue);
        Assert.Equal((1, true, 0, 1), (queue.Limit, queue.Paused, queue.Running, queue.Pending));

        Assert.False((await t.Dispatcher.ResumeQueueAsync(DispatcherQueues.PkgQueue)).Paused);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("held")).Outcome);
    }

    [Fact]
    public async Task Drain_RefusesNewJobs_FinishesHeldOnes_ThenReportsDrained()
    {
        await using var t = new TestDispatcher();
        var gate = t.PathOf("gate");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "a", $"sh -c \"while [ ! -e {gate} ]; do sleep 0.01; done\"");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "b", "true");

        var draining = await t.Dispatcher.DrainQueueAsync(DispatcherQueues.PkgQueue);
        var refused = await Assert.ThrowsAsync<JobRejectedException>(() => t.RunInAsync(DispatcherQueues.PkgQueue, "c", "true"));
        File.WriteAllText(gate, string.Empty);
        await t.WaitAsync("b");

        Assert.Equal((true, false), (draining.Draining, draining.Drained));
        Assert.Equal(JobRejectionReason.QueueDraining, refused.Reason);
        Assert.True(Assert.Single(t.Dispatcher.GetQueues(), q => q.Name == DispatcherQueues.PkgQueue).Drained);
        await t.Dispatcher.ResumeQueueAsync(DispatcherQueues.PkgQueue);
        await t.RunInAsync(DispatcherQueues.PkgQueue, "c", "true");
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("c")).Outcome);
    }

    [Fact]
    public async Task AddQueue_AndSetLimit_AtRunTime()
    {
        await using var t = new TestDispatcher();
        var dir = t.PathOf("together");
        Directory.CreateDirectory(dir);
        await t.Dispatcher.AddQueueAsync("builds", 1);
        Assert.Throws<ArgumentException>(() => t.Dispatcher.AddQueueAsync("builds", 1).AsTask().GetAwaiter().GetResult());
        await Assert.ThrowsAsync<QueueNotFoundException>(() => t.Dispatcher.PauseQueueAsync("nowhere").AsTask());

        // Both succeed only when they run at the same time: the second starts once the limit is raised.
        const string together = "sh -c \"touch {0}/{1}; for n in $(seq 3000); do [ $(ls {0} | wc -l) -ge 2 ] && exit 0; sleep 0.01; done; exit 1\"";
        await t.RunInAsync("builds", "x", string.Format(System.Globalization.CultureInfo.InvariantCulture, together, dir, "x"));
        await t.RunInAsync("builds", "y", string.Format(System.Globalization.CultureInfo.InvariantCulture, together, dir, "y"));
        Assert.Equal(2, (await t.Dispatcher.SetQueueLimitAsync("builds", 2)).Running);

        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("x")).Outcome);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("y")).Outcome);
        Assert.Contains("builds", t.Dispatcher.Queues);
    }

    [Fact]
    public async Task DelayedStart_WaitsForTheClock()
    {
        var time = new FakeTimeProvider(Start);
        await using var t = new TestDispatcher(time: time);
        var info = await t.Dispatcher.EnqueueAsync(new JobRequest("later", ["true"]) { Delay = TimeSpan.FromMinutes(10) });
        await t.Dispatcher.EnqueueAsync(new JobRequest("at", ["true"]) { StartAt = Start.AddHours(1) });

        Assert.Equal((JobState.Pending, (DateTimeOffset?)Start.AddMinutes(10)), (info.State, info.NotBefore));
        time.Advance(TimeSpan.FromMinutes(9));
        Assert.All(t.Dispatcher.List(), j => Assert.Equal(JobState.Pending, j.State));
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("later")).Outcome);
        Assert.Equal(JobState.Pending, Assert.Single(t.Dispatcher.List()).State);
        time.Advance(TimeSpan.FromMinutes(50));
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("at")).Outcome);
    }

    [Fact]
    public async Task Retry_OnFailureOnly_WithBackoff_KeepsEveryAttempt()
    {
        var time = new FakeTimeProvider(Start);
        await using var t = new TestDispatcher(time: time);
        var counter = t.PathOf("n");
        // Fails twice, then succeeds.
        var flaky = $"sh -c \"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]\"";
        await t.Dispatcher.EnqueueAsync(new JobRequest("flaky", [flaky]) { Retry = new RetryPolicy(5, TimeSpan.FromSeconds(10), Backoff: 2) });

        var second = await WaitForPendingAttempt(t, "flaky", 2);
        Assert.Equal(Start.AddSeconds(10), second.NotBefore);
        time.Advance(TimeSpan.FromSeconds(10));
        var third = await WaitForPendingAttempt(t, "flaky", 3);
        Assert.Equal(Start.AddSeconds(30), third.NotBefore);
        time.Advance(TimeSpan.FromSeconds(20));
        var result = await t.WaitAsync("flaky");

        Assert.Equal((JobOutcome.Succeeded, 3), (result.Outcome, result.Attempt));
        Assert.Equal([JobOutcome.Failed, JobOutcome.Failed], result.PreviousAttempts.Select(a => a.Outcome));
        Assert.Equal([1, 2], result.PreviousAttempts.Select(a => a.Attempt));

        // Killed is not a failure the policy retries.
        await t.Dispatcher.EnqueueAsync(new JobRequest("killed", ["sleep 3012"]) { Retry = new RetryPolicy(3, TimeSpan.Zero) });
        await t.Dispatcher.KillAsync(["killed"]);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal((JobOutcome.Killed, 1), (await t.WaitAsync("killed")) is var k ? (k.Outcome, k.Attempt) : default);
    }

    [Fact]
    public async Task Retry_GivesUpAfterCount()
    {
        var time = new FakeTimeProvider(Start);
        await using var t = new TestDispatcher(time: time);
        await t.Dispatcher.EnqueueAsync(new JobRequest("doomed", ["sh -c \"exit 7\""]) { Retry = new RetryPolicy(1, TimeSpan.FromSeconds(1)) });

        await WaitForPendingAttempt(t, "doomed", 2);
        time.Advance(TimeSpan.FromSeconds(1));
        var result = await t.WaitAsync("doomed");

        Assert.Equal((JobOutcome.Failed, 2, 7), (result.Outcome, result.Attempt, result.ExitCode));
        Assert.Single(result.PreviousAttempts);
    }

    [Fact]
    public async Task Recurrence_EnqueuesAJobPerOccurrence_InItsTimeZone_AndIsRemoved()
    {
        var time = new FakeTimeProvider(Start);
        await using var t = new TestDispatcher(time: time);
        var order = t.PathOf("runs");
        var info = await t.Dispatcher.AddRecurrenceAsync(new Recurrence("hourly", "30 * * * *", new JobRequest(string.Empty, [$"sh -c \"echo run >> {order}\""]))
        {
            TimeZone = "Asia/Kolkata",
        });

        // 12:00 UTC is 17:30 in Kolkata (UTC+05:30): minute 30 there is minute 0 here, so the next one is 13:00 UTC.
        Assert.Equal(Start.AddHours(1), info.NextOccurrence);
        time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("hourly@20260301T130000Z")).Outcome);
        Assert.Equal(Start.AddHours(2), Assert.Single(t.Dispatcher.ListRecurrences()).NextOccurrence);

        Assert.True(await t.Dispatcher.RemoveRecurrenceAsync("hourly"));
        Assert.False(await t.Dispatcher.RemoveRecurrenceAsync("hourly"));
        time.Advance(TimeSpan.FromHours(3));
        Assert.Empty(t.Dispatcher.List());
        Assert.Single(File.ReadAllLines(order));

        var bad = await Assert.ThrowsAsync<JobRejectedException>(() => t.Dispatcher.AddRecurrenceAsync(new Recurrence("bad", "61 * * * *", new JobRequest("", ["true"]))).AsTask());
        Assert.Contains("cron", bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Restart_KeepsQueueStates_DelayedJobs_PendingRetries_AndRecurrences_MissedRunsCoalesced()
    {
        var data = Directory.CreateTempSubdirectory("sched-store-").FullName;
        var time = new FakeTimeProvider(Start);
        void WithStore(DispatcherOptions o) => o.DataDirectory = data;
        var first = new TestDispatcher(WithStore, time: time) { KeepDirectory = true };
        var marker = first.PathOf("ran");
        await first.Dispatcher.PauseQueueAsync(DispatcherQueues.PkgQueue);
        await first.Dispatcher.AddQueueAsync("builds", 3);
        await first.Dispatcher.DrainQueueAsync(DispatcherQueues.IocageQueue);
        await first.RunInAsync(DispatcherQueues.PkgQueue, "held", $"touch {marker}");
        await first.Dispatcher.EnqueueAsync(new JobRequest("delayed", ["true"]) { Delay = TimeSpan.FromHours(2), Priority = 3, Labels = new Dictionary<string, string> { ["team"] = "ops" } });
        await first.Dispatcher.EnqueueAsync(new JobRequest("retried", ["sh -c \"exit 1\""]) { Retry = new RetryPolicy(2, TimeSpan.FromHours(1)) });
        await WaitForPendingAttempt(first, "retried", 2);
        await first.Dispatcher.AddRecurrenceAsync(new Recurrence("nightly", "0 2 * * *", new JobRequest("", ["true"])));
        await first.DisposeAsync();

        // Down for three days: three nightly runs were missed; one runs at once.
        time.Advance(TimeSpan.FromDays(3));
        await using var second = new TestDispatcher(WithStore, first.Directory, time: time);
        var queues = second.Dispatcher.GetQueues().ToDictionary(q => q.Name);
        Assert.True(queues[DispatcherQueues.PkgQueue].Paused);
        Assert.Equal(3, queues["builds"].Limit);
        Assert.True(queues[DispatcherQueues.IocageQueue].Draining);
        Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync("delayed")).Outcome);
        Assert.Equal("ops", second.Dispatcher.GetResult("delayed")!.Labels!["team"]);
        // Its second attempt was due during the downtime: it runs at once, fails, and waits an hour for the third.
        await WaitForPendingAttempt(second, "retried", 3);
        time.Advance(TimeSpan.FromHours(1));
        var retried = await second.WaitAsync("retried");
        Assert.Equal((JobOutcome.Failed, 3), (retried.Outcome, retried.Attempt));
        Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync("nightly@20260302T020000Z")).Outcome);
        Assert.Equal(Start.AddDays(4).Date.AddHours(2), Assert.Single(second.Dispatcher.ListRecurrences()).NextOccurrence!.Value.UtcDateTime);
        Assert.Equal(JobState.Pending, Assert.Single(second.Dispatcher.List(), j => j.Id == "held").State);
        Assert.False(File.Exists(marker));
    }

    private static async Task<JobResult> EnqueueAndWait(TestDispatcher t, JobRequest request)
    {
        await t.Dispatcher.EnqueueAsync(request);
        return await t.WaitAsync(request.Id);
    }

    private static async Task<JobInfo> WaitForPendingAttempt(TestDispatcher t, string id, int attempt)
    {
        JobInfo? found = null;
        await ProcessProbe.WaitUntilAsync(
            () => (found = t.Dispatcher.List().FirstOrDefault(j => j.Id == id && j.Attempt == attempt && j.State == JobState.Pending)) is not null,
            $"job {id} waits for attempt {attempt}");
        return found!;
    }
}
