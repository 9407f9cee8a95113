using System.Collections.Concurrent;
using Dispatcher.Events;
using Dispatcher.Protocol;
using Microsoft.Extensions.Options;

namespace Dispatcher.Tests.Events;

/// <summary>The protocol's event feed meeting a job it has not seen start (it began listening while the job ran).</summary>
public sealed class EventFeedJoinTests
{
    [Fact]
    public async Task AFeedThatFallsBehind_StillSaysWhenAJobItJoinedMidwayStarted_AfterTheJobHasFinished()
    {
        await using var t = new TestDispatcher();
        var go = t.PathOf("go");
        var command = $"sh -c \"echo early; while [ ! -e '{go}' ]; do sleep 0.02; done; echo late\"";
        using (var watch = t.Dispatcher.Subscribe())
        {
            await t.RunAsync("midjob", command, "echo second");
            await foreach (var e in watch.ReadAllAsync().WithCancellation(new CancellationTokenSource(TestDispatcher.Patience).Token))
            {
                if (e is JobOutputEvent { JobId: "midjob" })
                {
                    break;
                }
            }
        }

        // The feed joins now, and its pump is held up by its first frame (a listener that is slow for a while): by the time it
        // reads the job's last output, the job has finished and left the dispatcher's list of active jobs.
        using var feed = new DispatcherEventFeed(t.Dispatcher, Options.Create(new DispatcherProtocolOptions()),
            Options.Create(new DispatcherOptions()), [], TimeProvider.System);
        using var release = new ManualResetEventSlim();
        var frames = new ConcurrentQueue<DispatcherWireEvent>();
        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var listening = feed.Listen(frame =>
        {
            release.Wait(TestDispatcher.Patience);
            frames.Enqueue(frame);
            if (frame is { JobId: "midjob", State: JobState.Finished })
            {
                finished.TrySetResult();
            }
        });
        await t.RunAsync("staller", "true");
        await File.WriteAllTextAsync(go, string.Empty);
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("midjob")).Outcome);
        release.Set();
        await finished.Task.WaitAsync(TestDispatcher.Patience);

        var running = frames.Where(f => f is { JobId: "midjob", State: JobState.Running }).Select(f => f.Args["process_details"]!).ToList();
        Assert.Equal("late\n", string.Concat(running.Select(d => (string?)d[command])));
        Assert.All(running, details => Assert.NotNull((string?)details["time_started"]));
    }
}
