using Dispatcher.Events;

namespace Dispatcher.Testing;

/// <summary>
/// Creates the dispatcher's read-only models (<see cref="Dispatcher.JobInfo"/> and the events) with any values, for unit
/// tests of code that consumes them, for example a fake <see cref="IDispatcher"/>. The dispatcher itself never uses it.
/// <see cref="Dispatcher.JobResult"/> and <see cref="CommandResult"/> have public constructors.
/// </summary>
public static class DispatcherModelFactory
{
    /// <summary>Creates a snapshot of a pending or running job.</summary>
    /// <param name="id">The job id.</param>
    /// <param name="commands">The job's commands.</param>
    /// <param name="queue">The queue name.</param>
    /// <param name="state">The state.</param>
    /// <param name="queuePosition">The position in a queue with a concurrency limit, or <see langword="null"/>.</param>
    /// <param name="enqueuedAt">When it was enqueued.</param>
    /// <param name="startedAt">When it started, or <see langword="null"/> while pending.</param>
    /// <param name="currentCommand">The index of the running command, or <see langword="null"/> while pending.</param>
    /// <returns>The snapshot.</returns>
    public static JobInfo JobInfo(string id, IReadOnlyList<string> commands, string queue = "no_queue", JobState state = JobState.Pending,
        int? queuePosition = null, DateTimeOffset enqueuedAt = default, DateTimeOffset? startedAt = null, int? currentCommand = null)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(commands);
        ArgumentNullException.ThrowIfNull(queue);
        return new JobInfo(id, queue, commands, state, queuePosition, enqueuedAt, startedAt, currentCommand);
    }

    /// <summary>Creates the event of a job accepted into its queue.</summary>
    /// <param name="job">The job.</param>
    /// <param name="timestamp">When it happened.</param>
    /// <returns>The event.</returns>
    public static JobPendingEvent JobPending(JobInfo job, DateTimeOffset timestamp)
    {
        ArgumentNullException.ThrowIfNull(job);
        return new JobPendingEvent(job, timestamp);
    }

    /// <summary>Creates the event of a job that started running.</summary>
    /// <param name="job">The job.</param>
    /// <param name="timestamp">When it happened.</param>
    /// <returns>The event.</returns>
    public static JobStartedEvent JobStarted(JobInfo job, DateTimeOffset timestamp)
    {
        ArgumentNullException.ThrowIfNull(job);
        return new JobStartedEvent(job, timestamp);
    }

    /// <summary>Creates the event of a command that started.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="index">The command's index.</param>
    /// <param name="command">The command.</param>
    /// <param name="timestamp">When it happened.</param>
    /// <returns>The event.</returns>
    public static JobCommandStartedEvent JobCommandStarted(string jobId, int index, string command, DateTimeOffset timestamp)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        ArgumentNullException.ThrowIfNull(command);
        return new JobCommandStartedEvent(jobId, index, command, timestamp);
    }

    /// <summary>Creates the event of output written by a command.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="index">The command's index.</param>
    /// <param name="text">The output.</param>
    /// <param name="timestamp">When it happened.</param>
    /// <returns>The event.</returns>
    public static JobOutputEvent JobOutput(string jobId, int index, string text, DateTimeOffset timestamp)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        ArgumentNullException.ThrowIfNull(text);
        return new JobOutputEvent(jobId, index, text, timestamp);
    }

    /// <summary>Creates the event of a command that exited.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="index">The command's index.</param>
    /// <param name="command">The command.</param>
    /// <param name="exitCode">Its exit code.</param>
    /// <param name="timestamp">When it happened.</param>
    /// <returns>The event.</returns>
    public static JobCommandFinishedEvent JobCommandFinished(string jobId, int index, string command, int exitCode, DateTimeOffset timestamp)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        ArgumentNullException.ThrowIfNull(command);
        return new JobCommandFinishedEvent(jobId, index, command, exitCode, timestamp);
    }

    /// <summary>Creates the event of a finished job.</summary>
    /// <param name="result">Its result (its <see cref="JobResult.FinishedAt"/> is the event's time).</param>
    /// <returns>The event.</returns>
    public static JobFinishedEvent JobFinished(JobResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return new JobFinishedEvent(result);
    }
}
