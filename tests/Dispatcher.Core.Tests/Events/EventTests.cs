using System.Text;
using Dispatcher.Events;

namespace Dispatcher.Tests.Events;

public sealed class EventTests
{
    [Fact]
    public async Task Events_ComeInLifecycleOrder_AndOutputDeltasMakeTheFinalOutput()
    {
        await using var t = new TestDispatcher();
        using var subscription = t.Dispatcher.Subscribe();
        await t.RunAsync("ev", "sh -c \"for i in 1 2 3; do echo line $i; sleep 0.05; done\"", "echo done");

        var seen = new List<DispatcherEvent>();
        var outputs = new Dictionary<int, StringBuilder>();
        await foreach (var e in subscription.ReadAllAsync().WithCancellation(new CancellationTokenSource(TestDispatcher.Patience).Token))
        {
            seen.Add(e);
            if (e is JobOutputEvent o)
            {
                (outputs.TryGetValue(o.Index, out var sb) ? sb : outputs[o.Index] = new StringBuilder()).Append(o.Text);
            }

            if (e is JobFinishedEvent)
            {
                break;
            }
        }

        var kinds = seen.Where(e => e is not JobOutputEvent).Select(e => e.GetType().Name).ToArray();
        Assert.Equal(
            ["JobPendingEvent", "JobStartedEvent", "JobCommandStartedEvent", "JobCommandFinishedEvent", "JobCommandStartedEvent", "JobCommandFinishedEvent", "JobFinishedEvent"],
            kinds);
        Assert.All(seen, e => Assert.Equal("ev", e.JobId));
        var result = ((JobFinishedEvent)seen[^1]).Result;
        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal(result.CommandResults[0].Output, outputs[0].ToString());
        Assert.Equal("line 1\nline 2\nline 3\n", outputs[0].ToString());
        Assert.Equal("done\n", outputs[1].ToString());
    }

    [Fact]
    public async Task SlowSubscriber_IsDropped_WithoutStallingOthers()
    {
        await using var t = new TestDispatcher(o => o.EventBufferCapacity = 256);
        using var slow = t.Dispatcher.Subscribe();
        using var fast = t.Dispatcher.Subscribe();
        var fastReader = Task.Run(async () =>
        {
            await foreach (var e in fast.ReadAllAsync())
            {
                if (e is JobFinishedEvent f && f.JobId == "last")
                {
                    return true;
                }
            }

            return false;
        });

        // About 6 events per job: 70 jobs overflow the slow subscriber's 256, while the fast one never lags far behind.
        for (var i = 0; i < 70; i++)
        {
            await t.RunAsync($"j{i}", "echo hi");
            await t.WaitAsync($"j{i}");
        }

        await t.RunAsync("last", "true");

        Assert.True(await fastReader.WaitAsync(TestDispatcher.Patience));
        var drained = 0;
        var overflow = await Assert.ThrowsAsync<EventStreamOverflowException>(async () =>
        {
            await foreach (var e in slow.ReadAllAsync())
            {
                drained++;
            }
        });
        Assert.Equal(256, drained);
        Assert.Equal(256, overflow.Capacity);
    }

    [Fact]
    public async Task DisposedSubscription_Completes()
    {
        await using var t = new TestDispatcher();
        var subscription = t.Dispatcher.Subscribe();
        subscription.Dispose();
        await t.RunAsync("x", "true");
        await t.WaitAsync("x");

        Assert.False(await subscription.Events.WaitToReadAsync());
    }
}
