using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Dispatcher.Events;
using Dispatcher.Internal;
using Dispatcher.Protocol;
using Microsoft.Extensions.Options;

namespace Dispatcher.Tests.Events;

/// <summary>
/// The hand-off from the dispatcher to the protocol's event feed: the feed's subscription is not woken for a command's start
/// or end (events the feed makes no frame of), and still gets them in order, before the next event, so its frames are the same.
/// </summary>
public sealed class FeedHandOffTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UnixEpoch;

    [Fact]
    public async Task AHoldingSubscription_IsNotWokenForCommandEvents_AndReadsThemInOrderWithTheNextEvent()
    {
        var hub = new EventHub(64);
        using var holding = hub.Subscribe(64, holdCommandEvents: true);
        using var ordinary = hub.Subscribe(64);
        var holdingWait = holding.Events.WaitToReadAsync();
        var ordinaryWait = ordinary.Events.WaitToReadAsync();

        hub.Publish(new JobCommandFinishedEvent("a", 0, "true", 0, Now));
        hub.Publish(new JobCommandStartedEvent("b", 0, "true", Now));
        Assert.True(ordinaryWait.IsCompleted, "an ordinary subscriber is woken by a command event");
        Assert.False(holdingWait.IsCompleted, "the holding subscriber was woken by a command event");

        hub.Publish(new JobOutputEvent("b", 0, "x", Now));
        Assert.True(await holdingWait.AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(["CommandFinished a", "CommandStarted b", "Output b"], Drain(holding));
        Assert.Equal(["CommandFinished a", "CommandStarted b", "Output b"], Drain(ordinary));
    }

    [Fact]
    public void AHoldingSubscription_GetsItsHeldEventsBeforeItEnds_AndHoldsABoundedNumber()
    {
        var hub = new EventHub(4096);
        using var holding = hub.Subscribe(4096, holdCommandEvents: true);
        for (var i = 0; i < 1000; i++)
        {
            hub.Publish(new JobCommandStartedEvent("j", i, "true", Now));
        }

        // Never more than a few hundred wait unseen, whatever a job does.
        Assert.True(holding.Events.Count >= 1000 - 256, $"{holding.Events.Count} of 1000 readable");

        hub.Publish(new JobCommandFinishedEvent("j", 999, "true", 0, Now));
        hub.CompleteAll();
        var all = Drain(holding);
        Assert.Equal(1001, all.Count);
        Assert.Equal([.. Enumerable.Range(0, 1000).Select(_ => "CommandStarted j"), "CommandFinished j"], all);
        Assert.True(holding.Events.Completion.IsCompleted);
    }

    /// <summary>
    /// A running update that fires while the job's next command has started (its start and the previous command's end not yet
    /// read by the feed) still says which command runs and the previous one's return code.
    /// </summary>
    [Fact]
    public async Task AnUpdateAfterACommandChange_NamesTheNewCommand_AndThePreviousReturnCode()
    {
        await using var t = new TestDispatcher();
        using var feed = new DispatcherEventFeed(t.Dispatcher, Options.Create(new DispatcherProtocolOptions { EventUpdateInterval = TimeSpan.FromSeconds(1) }),
            Options.Create(new DispatcherOptions()), [], TimeProvider.System);
        var frames = new ConcurrentQueue<DispatcherWireEvent>();
        using var listening = feed.Listen(frames.Enqueue);
        await t.RunAsync("two", "echo first", "sleep 3");

        var deadline = DateTime.UtcNow + TestDispatcher.Patience;
        JsonNode? update = null;
        while (update is null && DateTime.UtcNow < deadline)
        {
            update = frames.Where(f => f is { JobId: "two", State: JobState.Running }).Select(f => f.Args["process_details"]!)
                .FirstOrDefault(d => (string?)d["echo first"] == "first\n");
            await Task.Delay(20);
        }

        Assert.NotNull(update);
        Assert.Equal("sleep 3", (string?)update["current_cmd"]);
        Assert.Equal("0", (string?)update["return_codes/echo first"]);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("two")).Outcome);
    }

    private static List<string> Drain(DispatcherSubscription subscription)
    {
        var read = new List<string>();
        while (subscription.Events.TryRead(out var e))
        {
            read.Add(e switch
            {
                JobCommandStartedEvent => "CommandStarted " + e.JobId,
                JobCommandFinishedEvent => "CommandFinished " + e.JobId,
                JobOutputEvent => "Output " + e.JobId,
                _ => e.GetType().Name + " " + e.JobId,
            });
        }

        return read;
    }
}
