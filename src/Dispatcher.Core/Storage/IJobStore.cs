namespace Dispatcher.Storage;

/// <summary>
/// Keeps the dispatcher's jobs across restarts: an ordered log of what happened to them. The dispatcher appends a record when a
/// job is enqueued, starts, starts a process and finishes, replays the log when the host starts, and now and then replaces the
/// log with the records of the jobs that still matter. The default store is a file journal under
/// <see cref="DispatcherOptions.DataDirectory"/>; register another implementation with <c>UseJobStore&lt;T&gt;()</c> to keep jobs elsewhere.
/// </summary>
/// <remarks>
/// <see cref="AppendAsync"/> and <see cref="RewriteAsync"/> are called from many threads, but in the order the records must be kept:
/// implementations must apply them in call order (queue them) and may batch them (group commit). They are called under the
/// dispatcher's lock, and sometimes on the thread that reads every running command's output: do not wait there for a flush to
/// the disk. A job is started only once its <see cref="JobEnqueuedRecord"/> is durable; when its append fails the job is rejected
/// with the exception's message, so say there what went wrong (for example that the storage is full or read-only). A
/// <see cref="JobStartedRecord"/> is appended before the job's process is spawned, and the dispatcher does not wait for its task:
/// a store whose record is kept by the time <see cref="AppendAsync"/> returns (the file store writes it into the file, a few
/// microseconds) never runs a started job again after a crash of the host; one that only queues it may.
/// Constructors should do no I/O: the dispatcher calls <see cref="LoadAsync"/> first, when the host starts.
/// </remarks>
public interface IJobStore : IAsyncDisposable
{
    /// <summary>
    /// Gets whether the store can write: a health check reads it. The default implementation reports
    /// <see cref="JobStoreStatus.Healthy"/> always.
    /// </summary>
    JobStoreHealth Health => JobStoreHealth.Healthy;

    /// <summary>
    /// Reads every intact record, oldest first, as a stream: a store of any size is replayed with bounded memory. Damaged
    /// records are skipped and reported (logged), not thrown.
    /// </summary>
    /// <param name="cancellationToken">Stops the reading.</param>
    /// <returns>The records.</returns>
    IAsyncEnumerable<JobStoreRecord> LoadAsync(CancellationToken cancellationToken = default);

    /// <summary>Appends a record (or queues it, in call order); the task completes when it is durable.</summary>
    /// <param name="record">The record.</param>
    /// <returns>A task that completes when the record will survive a crash of the host, or fails with the reason it will not.</returns>
    Task AppendAsync(JobStoreRecord record);

    /// <summary>Queues a replacement of the whole log by <paramref name="records"/> (compaction), applied atomically after the records queued before it.</summary>
    /// <param name="records">The records that still matter, oldest first.</param>
    /// <returns>A task that completes when the replacement is durable.</returns>
    Task RewriteAsync(IReadOnlyList<JobStoreRecord> records);
}

/// <summary>Whether a job store can keep new records.</summary>
public enum JobStoreStatus
{
    /// <summary>The last write succeeded (or nothing was written yet).</summary>
    Healthy,

    /// <summary>The last write failed (for example the storage is full or read-only); the next write tries again.</summary>
    Degraded,

    /// <summary>The store stopped after an unexpected error: every new job is rejected at once until the host restarts.</summary>
    Failed,
}

/// <summary>A job store's state, for health checks.</summary>
public sealed class JobStoreHealth
{
    /// <summary>Creates a state.</summary>
    /// <param name="status">The status.</param>
    /// <param name="description">What went wrong, or <see langword="null"/> when healthy.</param>
    public JobStoreHealth(JobStoreStatus status, string? description = null)
    {
        Status = status;
        Description = description;
    }

    /// <summary>Gets the state of a store that works.</summary>
    public static JobStoreHealth Healthy { get; } = new(JobStoreStatus.Healthy);

    /// <summary>Gets the status.</summary>
    public JobStoreStatus Status { get; }

    /// <summary>Gets what went wrong, or <see langword="null"/> when healthy.</summary>
    public string? Description { get; }

    /// <inheritdoc />
    public override string ToString() => Description is null ? Status.ToString() : $"{Status}: {Description}";
}

/// <summary>
/// One entry of the job log. The family is closed: <see cref="JobEnqueuedRecord"/>, <see cref="JobStartedRecord"/>,
/// <see cref="JobProcessStartedRecord"/>, <see cref="JobRetryScheduledRecord"/>, <see cref="JobFinishedRecord"/>,
/// <see cref="QueueStateRecord"/>, <see cref="RecurrenceRecord"/> and <see cref="RecurrenceRemovedRecord"/>.
/// </summary>
public abstract record JobStoreRecord
{
    private protected JobStoreRecord()
    {
    }

    /// <summary>Gets the id of the job the record is about, or an empty string for a record about a queue or a recurrence.</summary>
    public abstract string JobId { get; }
}

/// <summary>A job was accepted.</summary>
/// <param name="Request">The request, with every option.</param>
/// <param name="EnqueuedAt">When it was accepted.</param>
public sealed record JobEnqueuedRecord(JobRequest Request, DateTimeOffset EnqueuedAt) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => Request.Id;
}

/// <summary>A job started running.</summary>
/// <param name="Id">The job id.</param>
/// <param name="StartedAt">When it started.</param>
public sealed record JobStartedRecord(string Id, DateTimeOffset StartedAt) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => Id;
}

/// <summary>
/// A command of a running job started a process: what identifies it, so that after a crash of the host the dispatcher can end
/// what the command left running (and never hit a process that merely reuses the pid).
/// </summary>
/// <param name="Id">The job id.</param>
/// <param name="CommandIndex">The command's index in the job.</param>
/// <param name="ProcessId">The pid of the command's process; it leads a session (and a process group) of the same id.</param>
/// <param name="ProcessStartTime">When the process started, in clock ticks since boot (<c>/proc/PID/stat</c> field 22).</param>
/// <param name="BootId">The kernel's boot id when it started; the process cannot outlive a reboot.</param>
public sealed record JobProcessStartedRecord(string Id, int CommandIndex, int ProcessId, ulong ProcessStartTime, string BootId) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => Id;
}

/// <summary>A job finished.</summary>
/// <param name="Result">Its result.</param>
public sealed record JobFinishedRecord(JobResult Result) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => Result.Id;
}

/// <summary>An attempt of a job failed and the job runs again (<see cref="JobRequest.Retry"/>).</summary>
/// <param name="Attempt">The failed attempt's result (with the attempts before it).</param>
/// <param name="NotBefore">When the next attempt may start.</param>
public sealed record JobRetryScheduledRecord(JobResult Attempt, DateTimeOffset NotBefore) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => Attempt.Id;
}

/// <summary>A queue was added or changed at run time; the last record of a queue wins over its configured options.</summary>
/// <param name="Queue">The queue name.</param>
/// <param name="Limit">Its concurrency limit (0 for none).</param>
/// <param name="Paused">Whether it is paused.</param>
/// <param name="Draining">Whether it is draining.</param>
public sealed record QueueStateRecord(string Queue, int Limit, bool Paused, bool Draining) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => string.Empty;
}

/// <summary>A recurrence was added, or enqueued a job (the last record of a recurrence wins).</summary>
/// <param name="Recurrence">The recurrence.</param>
/// <param name="CreatedAt">When it was added.</param>
/// <param name="LastOccurrence">The occurrence it last enqueued a job for, or <see langword="null"/>.</param>
public sealed record RecurrenceRecord(Recurrence Recurrence, DateTimeOffset CreatedAt, DateTimeOffset? LastOccurrence) : JobStoreRecord
{
    /// <summary>Gets the recurrence id.</summary>
    public string RecurrenceId => Recurrence.Id;

    /// <inheritdoc />
    public override string JobId => string.Empty;
}

/// <summary>A recurrence was removed.</summary>
/// <param name="RecurrenceId">Its id.</param>
public sealed record RecurrenceRemovedRecord(string RecurrenceId) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => string.Empty;
}
