using Microsoft.Extensions.Logging;

namespace Dispatcher.Telemetry;

/// <summary>The dispatcher's log messages, with stable event ids.</summary>
internal static partial class DispatcherLog
{
    // Enqueue and start are Debug: at Information a job gives one line, JobFinished. With three lines per job the console
    // logger's thread took about 10 % of the sample host's CPU in a serial queue of short jobs, and the host spent 46-100 µs
    // more per job than with one (perf and same-run rounds, benchmarks/ANALYSIS.md); these two lines say nothing that the
    // finished line, the events and (for runs over a transport) the audit trail do not.
    [LoggerMessage(EventId = 1, EventName = "JobEnqueued", Level = LogLevel.Debug, Message = "Job {JobId} queued in {Queue} with {CommandCount} command(s)")]
    public static partial void JobEnqueued(ILogger logger, string jobId, string queue, int commandCount);

    [LoggerMessage(EventId = 2, EventName = "JobStarted", Level = LogLevel.Debug, Message = "Job {JobId} started in {Queue}")]
    public static partial void JobStarted(ILogger logger, string jobId, string queue);

    [LoggerMessage(EventId = 3, EventName = "JobFinished", Level = LogLevel.Information, Message = "Job {JobId} finished in {Queue}: {Outcome}, exit code {ExitCode}, {DurationMs:F0} ms")]
    public static partial void JobFinished(ILogger logger, string jobId, string queue, JobOutcome outcome, int? exitCode, double durationMs);

    [LoggerMessage(EventId = 4, EventName = "JobKilled", Level = LogLevel.Information, Message = "Job {JobId} killed while {State}")]
    public static partial void JobKilled(ILogger logger, string jobId, JobState state);

    [LoggerMessage(EventId = 5, EventName = "JobRejected", Level = LogLevel.Warning, Message = "Job {JobId} rejected ({Reason}): {Message}")]
    public static partial void JobRejected(ILogger logger, string jobId, JobRejectionReason reason, string message);

    [LoggerMessage(EventId = 6, EventName = "CommandNotStarted", Level = LogLevel.Warning, Message = "Job {JobId} command {Index} could not be started")]
    public static partial void CommandNotStarted(ILogger logger, string jobId, int index, Exception exception);

    [LoggerMessage(EventId = 7, EventName = "JobForceKilled", Level = LogLevel.Warning, Message = "Job {JobId} did not stop within the grace period of {GracePeriod}; killing it")]
    public static partial void JobForceKilled(ILogger logger, string jobId, TimeSpan gracePeriod);

    [LoggerMessage(EventId = 8, EventName = "Stopping", Level = LogLevel.Information, Message = "Dispatcher stopping: {Running} running job(s) will be interrupted; {Pending} pending job(s) (kept in the job store: {Kept})")]
    public static partial void Stopping(ILogger logger, int running, int pending, bool kept);

    [LoggerMessage(EventId = 9, EventName = "JobTimedOut", Level = LogLevel.Warning, Message = "Job {JobId} ran longer than its timeout of {Timeout}; killing it")]
    public static partial void JobTimedOut(ILogger logger, string jobId, TimeSpan timeout);

    [LoggerMessage(EventId = 10, EventName = "RunnerFault", Level = LogLevel.Error, Message = "Job {JobId} failed in the dispatcher itself")]
    public static partial void RunnerFault(ILogger logger, string jobId, Exception exception);

    [LoggerMessage(EventId = 11, EventName = "InMemory", Level = LogLevel.Information, Message = "Dispatcher keeps jobs in memory only (no Dispatcher:DataDirectory): pending jobs do not survive a restart")]
    public static partial void InMemory(ILogger logger);

    [LoggerMessage(EventId = 12, EventName = "Recovered", Level = LogLevel.Information, Message = "Dispatcher recovered {Pending} pending job(s), {Interrupted} interrupted job(s) and {Finished} finished result(s) from {Records} journal record(s)")]
    public static partial void Recovered(ILogger logger, int pending, int interrupted, int finished, long records);

    [LoggerMessage(EventId = 14, EventName = "LeftoverProcesses", Level = LogLevel.Warning, Message = "Job {JobId} was interrupted by a crash of the host and left {Count} process(es) running ({Pids}); ending them (SIGTERM, then SIGKILL after {GracePeriod}) before its queue starts")]
    public static partial void LeftoverProcesses(ILogger logger, string jobId, int count, string pids, TimeSpan gracePeriod);

    [LoggerMessage(EventId = 15, EventName = "JobNotDurable", Level = LogLevel.Error, Message = "Job {JobId} was not started: its record could not be written to the job store")]
    public static partial void JobNotDurable(ILogger logger, string jobId, Exception exception);

    [LoggerMessage(EventId = 13, EventName = "JobInterruptedByRestart", Level = LogLevel.Warning, Message = "Job {JobId} in {Queue} was running when the host stopped; it is recorded as interrupted")]
    public static partial void JobInterruptedByRestart(ILogger logger, string jobId, string queue);

    [LoggerMessage(EventId = 20, EventName = "JobSkipped", Level = LogLevel.Information, Message = "Job {JobId} skipped: it depended on {Dependency}, which did not succeed")]
    public static partial void JobSkipped(ILogger logger, string jobId, string dependency);

    [LoggerMessage(EventId = 21, EventName = "JobRetryScheduled", Level = LogLevel.Information, Message = "Job {JobId} attempt {Attempt} ended {Outcome}; it runs again at {RetryAt:O}")]
    public static partial void JobRetryScheduled(ILogger logger, string jobId, int attempt, JobOutcome outcome, DateTimeOffset retryAt);

    [LoggerMessage(EventId = 22, EventName = "QueueChanged", Level = LogLevel.Information, Message = "Queue {Queue} {Change}: limit {Limit}, paused {Paused}, draining {Draining}")]
    public static partial void QueueChanged(ILogger logger, string queue, string change, int limit, bool paused, bool draining);

    [LoggerMessage(EventId = 23, EventName = "QueueDrained", Level = LogLevel.Information, Message = "Queue {Queue} is drained: it holds no job")]
    public static partial void QueueDrained(ILogger logger, string queue);

    [LoggerMessage(EventId = 24, EventName = "RecurrenceFired", Level = LogLevel.Information, Message = "Recurrence {RecurrenceId} enqueued job {JobId} for {Occurrence:O}")]
    public static partial void RecurrenceFired(ILogger logger, string recurrenceId, string jobId, DateTimeOffset occurrence);

    [LoggerMessage(EventId = 25, EventName = "RecurrenceFailed", Level = LogLevel.Warning, Message = "Recurrence {RecurrenceId} could not enqueue its job for {Occurrence:O}")]
    public static partial void RecurrenceFailed(ILogger logger, string recurrenceId, DateTimeOffset occurrence, Exception exception);
}
