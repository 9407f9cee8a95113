namespace Dispatcher;

/// <summary>A snapshot of a pending or running job, as returned by <see cref="IDispatcher.List"/>.</summary>
public sealed class JobInfo
{
    internal JobInfo(string id, string queue, IReadOnlyList<string> commands, JobState state, int? queuePosition,
        DateTimeOffset enqueuedAt, DateTimeOffset? startedAt, int? currentCommand)
    {
        Id = id;
        Queue = queue;
        Commands = commands;
        State = state;
        QueuePosition = queuePosition;
        EnqueuedAt = enqueuedAt;
        StartedAt = startedAt;
        CurrentCommand = currentCommand;
    }

    /// <summary>Gets the job id.</summary>
    public string Id { get; }

    /// <summary>Gets the name of the job's queue.</summary>
    public string Queue { get; }

    /// <summary>Gets the job's commands.</summary>
    public IReadOnlyList<string> Commands { get; }

    /// <summary>Gets the job's state when the snapshot was taken.</summary>
    public JobState State { get; }

    /// <summary>
    /// Gets the job's position in a queue with a concurrency limit (running jobs first, 0 is the head),
    /// or <see langword="null"/> in a queue without a limit.
    /// </summary>
    public int? QueuePosition { get; }

    /// <summary>Gets when the job was enqueued.</summary>
    public DateTimeOffset EnqueuedAt { get; }

    /// <summary>Gets when the job started, or <see langword="null"/> while it is pending.</summary>
    public DateTimeOffset? StartedAt { get; }

    /// <summary>Gets the index of the command that is running, or <see langword="null"/> while the job is pending.</summary>
    public int? CurrentCommand { get; }

    /// <summary>Gets the job's priority (<see cref="JobRequest.Priority"/>).</summary>
    public int Priority { get; internal init; }

    /// <summary>Gets the attempt number: 1 for the first run, 2 for the first retry, and so on.</summary>
    public int Attempt { get; internal init; } = 1;

    /// <summary>Gets the earliest time a pending job may start (a delayed start or a retry's delay), or <see langword="null"/>.</summary>
    public DateTimeOffset? NotBefore { get; internal init; }

    /// <summary>Gets the job's labels, or <see langword="null"/>.</summary>
    public IReadOnlyDictionary<string, string>? Labels { get; internal init; }
}
