namespace Dispatcher.Storage;

/// <summary>
/// Keeps the dispatcher's jobs across restarts: an ordered log of what happened to them. The dispatcher appends a record when a
/// job is enqueued, starts and finishes, replays the log when it is created, and now and then replaces the log with the records
/// of the jobs that still matter. The default store is a file journal under <see cref="DispatcherOptions.DataDirectory"/>;
/// register another implementation as a singleton to keep jobs elsewhere.
/// </summary>
/// <remarks>
/// <see cref="AppendAsync"/> and <see cref="RewriteAsync"/> are called from many threads, but in the order the records must be kept:
/// implementations must apply them in call order (queue them) and may batch them (group commit). They are called under the
/// dispatcher's lock, and sometimes on the thread that reads every running command's output: return at once and write elsewhere.
/// </remarks>
public interface IJobStore : IAsyncDisposable
{
    /// <summary>Reads every intact record, oldest first. A damaged tail is cut off and reported, not thrown.</summary>
    /// <returns>The records.</returns>
    IReadOnlyList<JobStoreRecord> Load();

    /// <summary>Queues a record; the task completes when it is durable.</summary>
    /// <param name="record">The record.</param>
    /// <returns>A task that completes when the record will survive a crash of the host.</returns>
    Task AppendAsync(JobStoreRecord record);

    /// <summary>Queues a replacement of the whole log by <paramref name="records"/> (compaction), applied atomically after the records queued before it.</summary>
    /// <param name="records">The records that still matter, oldest first.</param>
    /// <returns>A task that completes when the replacement is durable.</returns>
    Task RewriteAsync(IReadOnlyList<JobStoreRecord> records);
}

/// <summary>One entry of the job log. The family is closed: <see cref="JobEnqueuedRecord"/>, <see cref="JobStartedRecord"/>, <see cref="JobFinishedRecord"/>.</summary>
public abstract record JobStoreRecord
{
    private protected JobStoreRecord()
    {
    }

    /// <summary>Gets the id of the job the record is about.</summary>
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

/// <summary>A job finished.</summary>
/// <param name="Result">Its result.</param>
public sealed record JobFinishedRecord(JobResult Result) : JobStoreRecord
{
    /// <inheritdoc />
    public override string JobId => Result.Id;
}
