using System.Collections.Concurrent;
using System.Diagnostics;

namespace Dispatcher.Tests.Telemetry;

/// <summary>The spans of the "Dispatcher" activity source, collected by an <see cref="ActivityListener"/> for one job.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task AJob_IsATraceOfItsOwn_LinkedToTheRequestThatEnqueuedIt_WithASpanPerCommand()
    {
        var id = "traced-" + Guid.NewGuid().ToString("N");
        var stopped = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is DispatcherTelemetry.ActivitySourceName or "test-request",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        using var requestSource = new ActivitySource("test-request");

        await using var t = new TestDispatcher();
        ActivityContext request;
        using (var requestSpan = requestSource.StartActivity("PUT /rpc/dispatcher", ActivityKind.Server)!)
        {
            request = requestSpan.Context;
            await t.RunAsync(id, "echo one", "sh -c \"exit 3\"", "echo never");

            // The job's span does not leak into the caller's context.
            Assert.Same(requestSpan, Activity.Current);
        }

        Assert.Equal(JobOutcome.Failed, (await t.WaitAsync(id)).Outcome);

        // The job's span ends as the job finishes (before its waiters hear of it).
        var spans = stopped.Where(a => Equals(a.GetTagItem("dispatcher.job.id"), id)).ToList();
        var enqueue = Assert.Single(spans, s => s.OperationName == "dispatcher.enqueue");
        var job = Assert.Single(spans, s => s.OperationName == "dispatcher.job");
        var commands = spans.Where(s => s.OperationName == "dispatcher.command").OrderBy(s => s.GetTagItem("dispatcher.command.index")).ToList();

        // enqueue: a child of the request, in the request's trace.
        Assert.Equal(request.TraceId, enqueue.TraceId);
        Assert.Equal(request.SpanId, enqueue.ParentSpanId);
        Assert.Equal(ActivityKind.Producer, enqueue.Kind);
        Assert.Equal("no_queue", enqueue.GetTagItem("dispatcher.queue.name"));

        // job: the root of a trace of its own, linked to the enqueue, started and finished with its outcome.
        Assert.NotEqual(request.TraceId, job.TraceId);
        Assert.Equal(default, job.ParentSpanId);
        Assert.Equal(enqueue.Context, Assert.Single(job.Links).Context);
        Assert.Equal(ActivityKind.Consumer, job.Kind);
        Assert.Equal("no_queue", job.GetTagItem("dispatcher.queue.name"));
        Assert.Equal("Failed", job.GetTagItem("dispatcher.job.outcome"));
        Assert.Equal(3, job.GetTagItem("process.exit.code"));
        Assert.Equal(ActivityStatusCode.Error, job.Status);
        Assert.Contains(job.Events, e => e.Name == "dispatcher.job.started");

        // One span per command that ran (the third never ran), children of the job's span, in order, with the exit code.
        Assert.Equal([0, 1], commands.Select(c => (int)c.GetTagItem("dispatcher.command.index")!));
        Assert.All(commands, c => Assert.Equal(job.SpanId, c.ParentSpanId));
        Assert.All(commands, c => Assert.Equal(job.TraceId, c.TraceId));
        Assert.Equal([0, 3], commands.Select(c => (int)c.GetTagItem("process.exit.code")!));
        Assert.Equal([ActivityStatusCode.Unset, ActivityStatusCode.Error], commands.Select(c => c.Status));
    }
}
