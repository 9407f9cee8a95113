using System.Diagnostics;

namespace Dispatcher.Telemetry;

/// <summary>
/// The dispatcher's spans, on the source <see cref="DispatcherTelemetry.ActivitySourceName"/>. Nothing is allocated when no
/// listener samples them: every method takes and returns <see langword="null"/> activities.
/// </summary>
internal static class DispatcherTracing
{
    public const string JobIdTag = "dispatcher.job.id";
    public const string QueueTag = DispatcherMetrics.QueueTag;
    public const string OutcomeTag = DispatcherMetrics.OutcomeTag;
    public const string CommandIndexTag = "dispatcher.command.index";
    public const string ExitCodeTag = "process.exit.code";
    public const string EnqueueSpan = "dispatcher.enqueue";
    public const string JobSpan = "dispatcher.job";
    public const string CommandSpan = "dispatcher.command";
    public const string StartedEvent = "dispatcher.job.started";

    public static readonly ActivitySource Source = new(DispatcherTelemetry.ActivitySourceName,
        typeof(DispatcherTracing).Assembly.GetName().Version?.ToString());

    /// <summary>Starts the enqueue span, a child of the caller's current span.</summary>
    public static Activity? StartEnqueue(string jobId, string queue)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var activity = Source.StartActivity(EnqueueSpan, ActivityKind.Producer);
        activity?.SetTag(JobIdTag, jobId);
        activity?.SetTag(QueueTag, queue);
        return activity;
    }

    /// <summary>
    /// Starts a job's span as the root of a trace of its own (a job outlives the request that enqueued it), linked to
    /// <paramref name="enqueuedBy"/>. It does not become the current span of the caller.
    /// </summary>
    public static Activity? StartJob(string jobId, string queue, ActivityContext enqueuedBy)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var previous = Activity.Current;
        Activity.Current = null;
        try
        {
            ActivityLink[]? links = enqueuedBy == default ? null : [new ActivityLink(enqueuedBy)];
            var activity = Source.StartActivity(JobSpan, ActivityKind.Consumer, default(ActivityContext), null, links);
            activity?.SetTag(JobIdTag, jobId);
            activity?.SetTag(QueueTag, queue);
            return activity;
        }
        finally
        {
            Activity.Current = previous;
        }
    }

    public static void Started(Activity? job) => job?.AddEvent(new ActivityEvent(StartedEvent));

    /// <summary>Starts a command's span, a child of its job's span (never of whatever is current on the calling thread).</summary>
    public static Activity? StartCommand(Activity? job, string jobId, int index)
    {
        if (job is null)
        {
            return null;
        }

        var activity = Source.StartActivity(CommandSpan, ActivityKind.Internal, job.Context);
        activity?.SetTag(JobIdTag, jobId);
        activity?.SetTag(CommandIndexTag, index);
        return activity;
    }

    public static void CommandFinished(Activity? command, int exitCode)
    {
        if (command is null)
        {
            return;
        }

        command.SetTag(ExitCodeTag, exitCode);
        if (exitCode != 0)
        {
            command.SetStatus(ActivityStatusCode.Error, $"exit code {exitCode}");
        }

        command.Stop();
    }

    public static void JobFinished(Activity? job, JobOutcome outcome, int? exitCode)
    {
        if (job is null)
        {
            return;
        }

        job.SetTag(OutcomeTag, outcome.ToString());
        if (exitCode is { } code)
        {
            job.SetTag(ExitCodeTag, code);
        }

        if (outcome is JobOutcome.Failed or JobOutcome.TimedOut)
        {
            job.SetStatus(ActivityStatusCode.Error, outcome.ToString());
        }

        job.Stop();
    }
}
