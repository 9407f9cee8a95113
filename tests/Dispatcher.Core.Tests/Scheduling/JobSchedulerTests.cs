using Dispatcher.Scheduling;
using Microsoft.Extensions.Time.Testing;

namespace Dispatcher.Tests.Scheduling;

/// <summary>The scheduling state machine alone: no processes, no threads, a fake clock. Each test runs in milliseconds.</summary>
public sealed class JobSchedulerTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly JobScheduler<TestJob> _scheduler;

    public JobSchedulerTests()
    {
        _scheduler = new JobScheduler<TestJob>(_time);
        _scheduler.AddQueue("serial", 1);
        _scheduler.AddQueue("free", 0);
        _scheduler.AddQueue("pair", 2);
    }

    [Fact]
    public void Submit_IntoQueueWithRoom_StartsAtOnce()
    {
        var work = Submit("a", "serial");

        Assert.Equal(["a"], Ids(work.Start));
        Assert.Equal(ScheduleState.Running, _scheduler.TryGetJob("a", out var a) ? a.ScheduleState : ScheduleState.None);
    }

    [Fact]
    public void Priorities_HigherFirst_FifoAmongEqual()
    {
        Submit("blocker", "serial");
        Submit("low1", "serial", priority: -1);
        Submit("mid1", "serial");
        Submit("high", "serial", priority: 5);
        Submit("mid2", "serial");
        Submit("low2", "serial", priority: -1);

        var order = new List<string>();
        var running = "blocker";
        for (var i = 0; i < 5; i++)
        {
            var work = _scheduler.Complete(Job(running), succeeded: true);
            running = Assert.Single(work.Start).Id;
            order.Add(running);
        }

        Assert.Equal(["high", "mid1", "mid2", "low1", "low2"], order);
    }

    [Fact]
    public void Limit_NeverExceeded_AndRaisingItStartsWaitingJobs()
    {
        for (var i = 0; i < 5; i++)
        {
            Submit($"j{i}", "pair");
        }

        Assert.Equal(2, _scheduler.GetQueue("pair")!.Running);
        Assert.Equal(3, _scheduler.GetQueue("pair")!.Pending);

        var work = _scheduler.SetLimit("pair", 4);

        Assert.Equal(["j2", "j3"], Ids(work.Start));
        Assert.Equal((4, 1), (_scheduler.GetQueue("pair")!.Running, _scheduler.GetQueue("pair")!.Pending));
    }

    [Fact]
    public void LoweringLimit_StopsNothing_StartsNothingUntilBelow()
    {
        Submit("a", "pair");
        Submit("b", "pair");
        Submit("c", "pair");
        Assert.Empty(_scheduler.SetLimit("pair", 1).Start);

        Assert.Empty(_scheduler.Complete(Job("a"), true).Start);
        Assert.Equal(["c"], Ids(_scheduler.Complete(Job("b"), true).Start));
    }

    [Fact]
    public void Pause_KeepsRunning_HoldsPending_ResumeStarts()
    {
        Submit("a", "serial");
        _scheduler.Pause("serial");
        Submit("b", "serial");

        var afterA = _scheduler.Complete(Job("a"), true);

        Assert.Empty(afterA.Start);
        Assert.True(_scheduler.GetQueue("serial")!.Paused);
        Assert.Equal(["b"], Ids(_scheduler.Resume("serial").Start));
    }

    [Fact]
    public void Drain_RefusesNewJobs_RunsHeldOnes_ReportsDrainedOnce()
    {
        Submit("a", "serial");
        Submit("b", "serial");

        Assert.Empty(_scheduler.Drain("serial").Drained);
        Assert.Equal(SubmitStatus.Draining, _scheduler.TrySubmit(new TestJob("c", "serial"), null, out _));

        var afterA = _scheduler.Complete(Job("a"), true);
        Assert.Equal(["b"], Ids(afterA.Start));
        Assert.Empty(afterA.Drained);
        Assert.Equal(["serial"], _scheduler.Complete(Job("b"), true).Drained);
        Assert.True(_scheduler.GetQueue("serial")!.Drained);

        _scheduler.Resume("serial");
        Assert.Equal(SubmitStatus.Accepted, _scheduler.TrySubmit(new TestJob("c", "serial"), null, out _));
    }

    [Fact]
    public void Drain_OfEmptyQueue_ReportsDrainedAtOnce() => Assert.Equal(["free"], _scheduler.Drain("free").Drained);

    [Fact]
    public void Dependencies_StartOnlyWhenAllSucceeded()
    {
        Submit("a", "free");
        Submit("b", "free");
        var c = Submit("c", "free", after: ["a", "b"]);

        Assert.Empty(c.Start);
        Assert.Equal(ScheduleState.WaitingForDependencies, Job("c").ScheduleState);
        Assert.Empty(_scheduler.Complete(Job("a"), true).Start);
        Assert.Equal(["c"], Ids(_scheduler.Complete(Job("b"), true).Start));
    }

    [Fact]
    public void FailedDependency_SkipsDependents_Transitively_AndNeverStartsThem()
    {
        Submit("a", "free");
        Submit("b", "free", after: ["a"]);
        Submit("c", "free", after: ["b"]);
        Submit("other", "serial");
        Submit("d", "serial", after: ["a"]);

        var work = _scheduler.Complete(Job("a"), succeeded: false);

        Assert.Equal(["b", "d", "c"], Ids(work.Skip));
        Assert.Empty(work.Start);
        Assert.False(_scheduler.Contains("b") || _scheduler.Contains("c") || _scheduler.Contains("d"));
        Assert.Empty(_scheduler.Complete(Job("other"), true).Start);
    }

    [Fact]
    public void RemovedPendingJob_SkipsItsDependents()
    {
        Submit("blocker", "serial");
        Submit("a", "serial");
        Submit("b", "free", after: ["a"]);

        var work = _scheduler.Remove(Job("a"));

        Assert.Equal(["b"], Ids(work.Skip));
        Assert.Empty(_scheduler.Complete(Job("blocker"), true).Start);
    }

    [Fact]
    public void HeldJob_WaitsForRelease_ThenForItsDependencies()
    {
        Submit("a", "free");
        var held = new TestJob("held", "free");
        Assert.Equal(SubmitStatus.Accepted, _scheduler.TrySubmit(held, ["a"], out var submitted, held: true));

        Assert.Empty(submitted.Start);
        Assert.Empty(_scheduler.Release(held).Start);
        Assert.Equal(["held"], Ids(_scheduler.Complete(Job("a"), true).Start));

        var alone = new TestJob("alone", "serial");
        _scheduler.TrySubmit(alone, null, out var none, held: true);
        Assert.Empty(none.Start);
        Assert.Equal(["alone"], Ids(_scheduler.Release(alone).Start));
        Assert.Empty(_scheduler.Release(alone).Start);
    }

    [Fact]
    public void UnknownDependency_IsRefused_AndChangesNothing()
    {
        Assert.Equal(SubmitStatus.UnknownDependency, _scheduler.TrySubmit(new TestJob("x", "free"), ["nope"], out _));
        Assert.Equal(0, _scheduler.Count);
    }

    [Fact]
    public void DuplicateId_AndUnknownQueue_AreRefused()
    {
        Submit("a", "free");
        Assert.Equal(SubmitStatus.DuplicateId, _scheduler.TrySubmit(new TestJob("a", "free"), null, out _));
        Assert.Equal(SubmitStatus.UnknownQueue, _scheduler.TrySubmit(new TestJob("b", "nowhere"), null, out _));
    }

    [Fact]
    public void DelayedJob_StartsWhenDue_NotBefore()
    {
        var job = new TestJob("later", "free") { NotBefore = _time.GetUtcNow().AddSeconds(30) };
        _scheduler.TrySubmit(job, null, out var work);

        Assert.Empty(work.Start);
        Assert.Equal(job.NotBefore, _scheduler.NextDue);
        _time.Advance(TimeSpan.FromSeconds(29));
        Assert.Empty(_scheduler.Tick().Start);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(["later"], Ids(_scheduler.Tick().Start));
        Assert.Null(_scheduler.NextDue);
    }

    [Fact]
    public void DelayedJobs_BecomeReadyInTimeOrder_ThenRunByPriority()
    {
        Submit("blocker", "serial");
        var now = _time.GetUtcNow();
        _scheduler.TrySubmit(new TestJob("late-high", "serial", priority: 9) { NotBefore = now.AddMinutes(2) }, null, out _);
        _scheduler.TrySubmit(new TestJob("soon-low", "serial") { NotBefore = now.AddMinutes(1) }, null, out _);

        Assert.Equal(now.AddMinutes(1), _scheduler.NextDue);
        _time.Advance(TimeSpan.FromMinutes(5));
        Assert.Empty(_scheduler.Tick().Start);

        Assert.Equal(["late-high"], Ids(_scheduler.Complete(Job("blocker"), true).Start));
    }

    [Fact]
    public void Dependency_ThenDelay_BothRespected()
    {
        Submit("a", "free");
        var job = new TestJob("b", "free") { NotBefore = _time.GetUtcNow().AddSeconds(10) };
        _scheduler.TrySubmit(job, ["a"], out _);

        Assert.Null(_scheduler.NextDue);
        Assert.Empty(_scheduler.Complete(Job("a"), true).Start);
        Assert.Equal(ScheduleState.Delayed, job.ScheduleState);
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(["b"], Ids(_scheduler.Tick().Start));
    }

    [Fact]
    public void Retry_FreesTheSlot_KeepsPlace_AndWaitsForItsDelay()
    {
        Submit("a", "serial");
        Submit("b", "serial");
        Submit("dependent", "free", after: ["a"]);

        var work = _scheduler.Retry(Job("a"), _time.GetUtcNow().AddSeconds(5));

        Assert.Equal(["b"], Ids(work.Start));
        Assert.Empty(work.Skip);
        Assert.Equal(ScheduleState.Delayed, Job("a").ScheduleState);
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.Empty(_scheduler.Tick().Start);
        Assert.Equal(["a"], Ids(_scheduler.Complete(Job("b"), true).Start));
        Assert.Equal(["dependent"], Ids(_scheduler.Complete(Job("a"), true).Start));
    }

    [Fact]
    public void JobsOf_ListsRunningThenReadyThenWaiting_WithPositions()
    {
        Submit("run", "serial");
        Submit("low", "serial", priority: -1);
        Submit("high", "serial", priority: 1);
        _scheduler.TrySubmit(new TestJob("delayed", "serial", priority: 100) { NotBefore = _time.GetUtcNow().AddHours(1) }, null, out _);

        var jobs = _scheduler.JobsOf("serial").ToList();

        Assert.Equal(["run", "high", "low", "delayed"], Ids(jobs));
        Assert.Equal([0, 1, 2, 3], jobs.Select(JobScheduler<TestJob>.PositionOf));
    }

    [Fact]
    public void Halt_StartsNothingMore()
    {
        Submit("a", "serial");
        Submit("b", "serial");
        _scheduler.Halt();

        Assert.Empty(_scheduler.Complete(Job("a"), true).Start);
        Assert.Empty(Submit("c", "free").Start);
    }

    [Fact]
    public void LongDependencyChain_SkipsWithoutDeepRecursion()
    {
        Submit("root", "free");
        for (var i = 0; i < 100_000; i++)
        {
            Submit($"c{i}", "free", after: [i == 0 ? "root" : $"c{i - 1}"]);
        }

        var work = _scheduler.Complete(Job("root"), succeeded: false);

        Assert.Equal(100_000, work.Skip.Count);
        Assert.Equal(0, _scheduler.Count);
    }

    [Fact]
    public void AddQueue_AtRunTime_TakesJobs_AndNamesAreUnique()
    {
        Assert.True(_scheduler.AddQueue("builds", 3));
        Assert.False(_scheduler.AddQueue("builds", 1));
        Assert.Equal(["serial", "free", "pair", "builds"], _scheduler.QueueNames);
        Assert.Equal(["x"], Ids(Submit("x", "builds").Start));
        Assert.Equal(3, _scheduler.GetQueue("builds")!.Limit);
    }

    [Fact]
    public void HeldJobs_ReleasedOutOfOrder_StillStartFirstInFirstOut()
    {
        // Two records made durable by one flush: their continuations may release the later job first.
        Assert.Equal(SubmitStatus.Accepted, _scheduler.TrySubmit(new TestJob("a", "serial"), null, out var wa, held: true));
        Assert.Equal(SubmitStatus.Accepted, _scheduler.TrySubmit(new TestJob("b", "serial"), null, out var wb, held: true));
        Assert.Empty(wa.Start);
        Assert.Empty(wb.Start);

        Assert.Empty(_scheduler.Release(Job("b")).Start);
        Assert.Equal(["a"], Ids(_scheduler.Release(Job("a")).Start));
        Assert.Equal(["b"], Ids(_scheduler.Complete(Job("a"), true).Start));
    }

    [Fact]
    public void HeldJob_Removed_LetsTheLaterReadyJobStart()
    {
        _scheduler.TrySubmit(new TestJob("a", "serial"), null, out _, held: true);
        _scheduler.TrySubmit(new TestJob("b", "serial"), null, out _, held: true);
        Assert.Empty(_scheduler.Release(Job("b")).Start);

        Assert.Equal(["b"], Ids(_scheduler.Remove(Job("a")).Start));
    }

    private SchedulerWork<TestJob> Submit(string id, string queue, int priority = 0, string[]? after = null)
    {
        Assert.Equal(SubmitStatus.Accepted, _scheduler.TrySubmit(new TestJob(id, queue, priority), after, out var work));
        return work;
    }

    private TestJob Job(string id) => _scheduler.TryGetJob(id, out var job) ? job : throw new KeyNotFoundException(id);

    private static string[] Ids(IEnumerable<TestJob> jobs) => [.. jobs.Select(j => j.Id)];

    private sealed class TestJob(string id, string queue, int priority = 0) : ScheduledJob(id, queue, priority);
}
