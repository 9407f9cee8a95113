using System.Diagnostics;

namespace Dispatcher.Tests.Containment;

/// <summary>Limits enforced through the job's cgroups, with real processes (skipped, with the reason, where the machine has no such hierarchy).</summary>
public sealed class LimitTests
{
    [SkippableFact]
    public async Task MemoryLimit_JobOverIt_EndsOomKilled()
    {
        ContainmentTests.SkipUnlessAvailable(ContainmentMode.Auto);
        await using var t = new TestDispatcher(o => o.Containment.Mode = ContainmentMode.Auto);
        Skip.If(t.Dispatcher.Containment?.CanLimit("memory") != true, "no memory cgroup hierarchy can be used here");

        // A string that doubles until the kernel stops it: 32 MiB is reached within a few doublings.
        await t.Dispatcher.EnqueueAsync(new JobRequest("hog", ["sh -c \"a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done\""])
        {
            Limits = new JobLimits { MemoryBytes = 32 * 1024 * 1024 },
        });
        var result = await t.WaitAsync("hog");

        Assert.Equal(JobOutcome.OomKilled, result.Outcome);
        Assert.Equal(128 + 9, result.ExitCode);
    }

    [SkippableFact]
    public async Task MemoryLimit_JobUnderIt_Succeeds()
    {
        ContainmentTests.SkipUnlessAvailable(ContainmentMode.Auto);
        await using var t = new TestDispatcher(o =>
        {
            o.Containment.Mode = ContainmentMode.Auto;
            o.Queues["small"] = new QueueOptions { MaxConcurrency = 0, Limits = new JobLimits { MemoryBytes = 64 * 1024 * 1024, MaxProcesses = 50, CpuWeight = 50 } };
        });

        var result = await t.Dispatcher.EnqueueAsync(new JobRequest("fine", ["sh -c \"echo ok\""]) { Queue = "small" }).AsTask()
            .ContinueWith(_ => t.WaitAsync("fine")).Unwrap();

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal("ok\n", result.CommandResults[0].Output);
    }

    [SkippableFact]
    public async Task PidsLimit_ForkBomb_IsCappedAndTheDispatcherAnswersThroughout()
    {
        ContainmentTests.SkipUnlessAvailable(ContainmentMode.Auto);
        var mark = Guid.NewGuid().ToString("N");
        await using var cleanup = new ContainmentTests.MarkedCleanup(mark);
        await using var t = new TestDispatcher(o => o.Containment.Mode = ContainmentMode.Auto);
        Skip.If(t.Dispatcher.Containment?.CanLimit("pids") != true, "no pids cgroup hierarchy can be used here");
        const int Limit = 32;

        // Arrange: a fork bomb that would take the machine down without its limit; the job's timeout ends it. The sleep is
        // started before the bomb and waited for with a builtin: once the bomb holds every allowed process the shell could
        // not fork it any more (the job then failed at once instead of timing out: seen once on a loaded machine).
        await t.Dispatcher.EnqueueAsync(new JobRequest("bomb", ["sh -c \"sleep 300 & f() { f | f & }; f; wait\""])
        {
            Limits = new JobLimits { MaxProcesses = Limit },
            Timeout = TimeSpan.FromSeconds(5),
            Environment = new Dictionary<string, string> { ["DISPATCHER_TEST_MARK"] = mark },
        });

        // Act: while it runs, list the jobs over and over.
        var slowest = TimeSpan.Zero;
        var most = 0;
        var completion = t.WaitAsync("bomb");
        while (!completion.IsCompleted)
        {
            var watch = Stopwatch.StartNew();
            _ = t.Dispatcher.List();
            slowest = watch.Elapsed > slowest ? watch.Elapsed : slowest;
            most = Math.Max(most, ContainmentTests.Marked(mark).Count);
            await Task.WhenAny(completion, Task.Delay(50));
        }

        // Assert
        var result = await completion;
        Assert.Equal(JobOutcome.TimedOut, result.Outcome);
        Assert.InRange(most, 1, Limit);
        Assert.True(slowest < TimeSpan.FromSeconds(1), $"list took {slowest} while the bomb ran");
        await ProcessProbe.WaitUntilAsync(() => ContainmentTests.Marked(mark).Count == 0, "no process of the bomb is left");
    }
}

public sealed class JobLimitsTests
{
    [Theory]
    [InlineData(0L, null, null, "memory limit of 0 bytes")]
    [InlineData(null, 0, null, "process limit of 0")]
    [InlineData(null, null, 10001, "CPU weight of 10001")]
    public async Task Enqueue_InvalidLimits_IsRejectedSayingWhich(long? memory, int? processes, int? weight, string expected)
    {
        await using var t = new TestDispatcher();

        var ex = await Assert.ThrowsAsync<JobRejectedException>(() => t.Dispatcher.EnqueueAsync(new JobRequest("bad", ["true"])
        {
            Limits = new JobLimits { MemoryBytes = memory, MaxProcesses = processes, CpuWeight = weight },
        }).AsTask());

        Assert.Equal(JobRejectionReason.InvalidRequest, ex.Reason);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Empty(t.Dispatcher.List());
    }

    [Fact]
    public void Combine_JobLimitsWinOneByOne()
    {
        var combined = JobLimits.Combine(new JobLimits { MemoryBytes = 1, MaxProcesses = 2 }, new JobLimits { MaxProcesses = 3, CpuWeight = 4 });

        Assert.Equal(new JobLimits { MemoryBytes = 1, MaxProcesses = 3, CpuWeight = 4 }, combined);
    }
}
