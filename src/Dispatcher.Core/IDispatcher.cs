using Dispatcher.Events;

namespace Dispatcher;

/// <summary>
/// Runs jobs (ordered lists of external commands) in named queues, lists and kills them, keeps the results of finished jobs
/// for a while, and publishes lifecycle events.
/// </summary>
/// <remarks>All members may be called from many threads at once.</remarks>
public interface IDispatcher
{
    /// <summary>Gets the names of the dispatcher's queues.</summary>
    IReadOnlyCollection<string> Queues { get; }

    /// <summary>Puts a job into its queue. It starts as soon as the queue has room.</summary>
    /// <param name="request">The job.</param>
    /// <param name="cancellationToken">Cancels the wait for the job to be accepted.</param>
    /// <returns>The job as accepted, pending or already running.</returns>
    /// <exception cref="JobRejectedException">The job was not accepted (no commands, an empty command, an unknown queue,
    /// an id that is already pending or running, or the dispatcher is stopping); nothing was changed.</exception>
    ValueTask<JobInfo> EnqueueAsync(JobRequest request, CancellationToken cancellationToken = default);

    /// <summary>Lists the pending and running jobs, grouped by queue in the order of <see cref="Queues"/>; in each queue running jobs come first, then pending jobs in the order they will start.</summary>
    /// <returns>A snapshot.</returns>
    IReadOnlyList<JobInfo> List();

    /// <summary>Looks up a pending or running job.</summary>
    /// <param name="jobId">The job id.</param>
    /// <returns>A snapshot of the job, or <see langword="null"/> if no job with that id is pending or running (see <see cref="GetResult"/> for finished ones).</returns>
    JobInfo? GetJob(string jobId);

    /// <summary>
    /// Kills jobs. A pending job is removed and never starts. A running job's whole process tree gets SIGTERM, and SIGKILL after
    /// <see cref="DispatcherOptions.KillGracePeriod"/>; its remaining commands never start.
    /// </summary>
    /// <param name="jobIds">The ids; unknown and finished ids are ignored.</param>
    /// <param name="cancellationToken">A token to cancel the call.</param>
    /// <returns>The ids of the jobs that were pending or running and are now killed or being killed.</returns>
    ValueTask<IReadOnlyList<string>> KillAsync(IEnumerable<string> jobIds, CancellationToken cancellationToken = default);

    /// <summary>Kills one job, as <see cref="KillAsync(IEnumerable{string}, CancellationToken)"/> does.</summary>
    /// <param name="jobId">The id; an unknown or finished id is ignored.</param>
    /// <param name="cancellationToken">A token to cancel the call.</param>
    /// <returns><see langword="true"/> if the job was pending or running and is now killed or being killed.</returns>
    ValueTask<bool> KillAsync(string jobId, CancellationToken cancellationToken = default);

    /// <summary>Looks up the result of a finished job that is still retained (see <see cref="DispatcherOptions.RetainedJobCount"/> and <see cref="DispatcherOptions.RetainedJobAge"/>).</summary>
    /// <param name="jobId">The job id.</param>
    /// <returns>The result, or <see langword="null"/> if no finished job with that id is retained.</returns>
    JobResult? GetResult(string jobId);

    /// <summary>Lists the retained results of finished jobs, oldest first (with a job store, they survive restarts).</summary>
    /// <returns>A snapshot.</returns>
    IReadOnlyList<JobResult> ListFinished();

    /// <summary>Waits for a pending or running job to finish, or returns the retained result of a finished one.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the wait (not the job).</param>
    /// <returns>The job's result.</returns>
    /// <exception cref="JobNotFoundException">No job with that id is pending, running or retained.</exception>
    Task<JobResult> WaitForCompletionAsync(string jobId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Subscribes to the events of all jobs from now on: the subscription is registered before this method returns, so no event
    /// of a job enqueued afterwards is missed. Each subscriber has its own buffer of <see cref="DispatcherOptions.EventBufferCapacity"/>
    /// events: a subscriber that falls further behind is unsubscribed and its reader completes with <see cref="EventStreamOverflowException"/>,
    /// so a slow reader never slows the dispatcher or other subscribers, and never grows memory without bound.
    /// </summary>
    /// <returns>The subscription; dispose it to unsubscribe.</returns>
    DispatcherSubscription Subscribe();

    /// <summary>Lists the queues with their limits, states and job counts, in the order of <see cref="Queues"/>.</summary>
    /// <returns>A snapshot.</returns>
    IReadOnlyList<QueueInfo> GetQueues();

    /// <summary>Adds a queue at run time. With a job store it survives restarts (it need not be configured again).</summary>
    /// <param name="name">The queue name.</param>
    /// <param name="limit">How many of its jobs may run at once; 0 for no limit.</param>
    /// <param name="cancellationToken">Cancels the wait for the change to be durable.</param>
    /// <returns>The new queue.</returns>
    /// <exception cref="ArgumentException">The name is empty or a queue with that name exists.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="limit"/> is negative.</exception>
    ValueTask<QueueInfo> AddQueueAsync(string name, int limit, CancellationToken cancellationToken = default);

    /// <summary>Changes a queue's concurrency limit (durable). A higher limit starts waiting jobs at once; a lower one stops none.</summary>
    /// <param name="name">The queue name.</param>
    /// <param name="limit">How many of its jobs may run at once; 0 for no limit.</param>
    /// <param name="cancellationToken">Cancels the wait for the change to be durable.</param>
    /// <returns>The queue after the change.</returns>
    /// <exception cref="QueueNotFoundException">No queue has that name.</exception>
    ValueTask<QueueInfo> SetQueueLimitAsync(string name, int limit, CancellationToken cancellationToken = default);

    /// <summary>Pauses a queue (durable): its running jobs go on, its pending jobs wait (and new ones are accepted) until it is resumed.</summary>
    /// <param name="name">The queue name.</param>
    /// <param name="cancellationToken">Cancels the wait for the change to be durable.</param>
    /// <returns>The queue after the change.</returns>
    /// <exception cref="QueueNotFoundException">No queue has that name.</exception>
    ValueTask<QueueInfo> PauseQueueAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Ends a queue's pause or drain (durable) and starts what it has room for.</summary>
    /// <param name="name">The queue name.</param>
    /// <param name="cancellationToken">Cancels the wait for the change to be durable.</param>
    /// <returns>The queue after the change.</returns>
    /// <exception cref="QueueNotFoundException">No queue has that name.</exception>
    ValueTask<QueueInfo> ResumeQueueAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>
    /// Drains a queue (durable): it refuses new jobs (<see cref="JobRejectionReason.QueueDraining"/>) and runs the jobs it holds
    /// until none is left; then <see cref="QueueInfo.Drained"/> is true. <see cref="ResumeQueueAsync"/> ends the drain.
    /// </summary>
    /// <param name="name">The queue name.</param>
    /// <param name="cancellationToken">Cancels the wait for the change to be durable.</param>
    /// <returns>The queue after the change.</returns>
    /// <exception cref="QueueNotFoundException">No queue has that name.</exception>
    ValueTask<QueueInfo> DrainQueueAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Adds (or replaces) a recurring job; with a job store it survives restarts.</summary>
    /// <param name="recurrence">The recurrence.</param>
    /// <param name="cancellationToken">Cancels the wait for the change to be durable.</param>
    /// <returns>The recurrence with its next occurrence.</returns>
    /// <exception cref="JobRejectedException">The cron expression, the time zone or the job is invalid.</exception>
    ValueTask<RecurrenceInfo> AddRecurrenceAsync(Recurrence recurrence, CancellationToken cancellationToken = default);

    /// <summary>Removes a recurring job; jobs it already enqueued are not touched.</summary>
    /// <param name="id">The recurrence id.</param>
    /// <param name="cancellationToken">Cancels the wait for the change to be durable.</param>
    /// <returns>Whether a recurrence with that id existed.</returns>
    ValueTask<bool> RemoveRecurrenceAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Lists the recurring jobs, by id.</summary>
    /// <returns>A snapshot.</returns>
    IReadOnlyList<RecurrenceInfo> ListRecurrences();

    /// <summary>
    /// Reads a job's full output (all commands and attempts, merged) from a byte offset, while it runs and after it finished. With
    /// a data directory the log is a file bounded by <see cref="DispatcherOptions.MaxLogBytes"/>; without one it is the output
    /// kept in memory.
    /// </summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="offset">The UTF-8 byte offset to read from (0 for the start; a chunk's <see cref="JobLogChunk.NextOffset"/> to go on).</param>
    /// <param name="limit">The most bytes to return, 1 to 1 048 576 (at least one whole character is returned when there is one).</param>
    /// <param name="cancellationToken">A token to cancel the call.</param>
    /// <returns>The chunk.</returns>
    /// <exception cref="JobNotFoundException">No job with that id is pending, running or retained.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> is negative or <paramref name="limit"/> is out of range.</exception>
    ValueTask<JobLogChunk> ReadLogAsync(string jobId, long offset, int limit, CancellationToken cancellationToken = default);
}
