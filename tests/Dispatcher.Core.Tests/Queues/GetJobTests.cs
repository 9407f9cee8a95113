namespace Dispatcher.Tests.Queues;

/// <summary><see cref="IDispatcher.GetJob"/> and the single-id <see cref="IDispatcher.KillAsync(string, CancellationToken)"/>.</summary>
public sealed class GetJobTests
{
    [Fact]
    public async Task GetJob_AnswersPendingAndRunningJobs_AsListDoes_AndNullOtherwise()
    {
        await using var t = new TestDispatcher();
        IDispatcher dispatcher = t.Dispatcher;
        await t.RunInAsync(DispatcherQueues.PkgQueue, "a", "sleep 300");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "b", "true");
        await t.RunInAsync(DispatcherQueues.PkgQueue, "c", "true", "true");
        await t.RunAsync("d", "sleep 300");
        await t.RunAsync("done", "true");
        await t.WaitAsync("done");

        foreach (var listed in dispatcher.List())
        {
            var job = dispatcher.GetJob(listed.Id);
            Assert.NotNull(job);
            Assert.Equal((listed.Queue, listed.State, listed.QueuePosition), (job.Queue, job.State, job.QueuePosition));
            Assert.Equal(listed.Commands, job.Commands);
        }

        Assert.Equal((JobState.Pending, (int?)2), (dispatcher.GetJob("c")!.State, dispatcher.GetJob("c")!.QueuePosition));
        Assert.Null(dispatcher.GetJob("done"));
        Assert.Null(dispatcher.GetJob("never"));
        await dispatcher.KillAsync(["a", "b", "c", "d"]);
    }

    [Fact]
    public async Task KillAsync_OneId_KillsIt_AndSaysWhetherItWasThere()
    {
        await using var t = new TestDispatcher();
        IDispatcher dispatcher = t.Dispatcher;
        await t.RunAsync("running", "sleep 300");

        Assert.True(await dispatcher.KillAsync("running"));
        Assert.Equal(JobOutcome.Killed, (await t.WaitAsync("running")).Outcome);
        Assert.False(await dispatcher.KillAsync("running"));
        Assert.False(await dispatcher.KillAsync("never"));
    }
}
