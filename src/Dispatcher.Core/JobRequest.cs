namespace Dispatcher;

/// <summary>
/// A request to run a job: an id and an ordered list of commands, run one after another in a queue.
/// </summary>
/// <remarks>
/// Each command string is split into a program and its arguments by <see cref="CommandLine.Split(string)"/>
/// (the rules of Qt's <c>QProcess::start</c>) and is never passed through a shell. Use <c>sh -c "..."</c> when a shell is wanted.
/// </remarks>
public sealed record JobRequest
{
    /// <summary>Creates a request.</summary>
    /// <param name="id">The job id; unique among pending and running jobs.</param>
    /// <param name="commands">The commands, run in order; the first that exits non-zero ends the job.</param>
    public JobRequest(string id, IReadOnlyList<string> commands)
    {
        Id = id;
        Commands = commands;
    }

    /// <summary>Creates a request without an id: the dispatcher generates one (32 hexadecimal digits), returned in <see cref="JobInfo.Id"/>.</summary>
    /// <param name="commands">The commands, run in order; the first that exits non-zero ends the job.</param>
    public JobRequest(IReadOnlyList<string> commands)
        : this(string.Empty, commands)
    {
        GeneratesId = true;
    }

    /// <summary>Gets whether the dispatcher generates the id (the request was created without one and its id is still empty).</summary>
    public bool GeneratesId { get; init; }

    /// <summary>
    /// Gets a key that makes submitting the same job twice harmless: while a job with this key is pending, running or retained,
    /// enqueueing another request with the key creates nothing and returns that job. <see langword="null"/> for none.
    /// </summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>Gets the job id. It must be unique among pending and running jobs.</summary>
    public string Id { get; init; }

    /// <summary>Gets the commands, run in order. The first command that exits non-zero ends the job.</summary>
    public IReadOnlyList<string> Commands { get; init; }

    /// <summary>Gets the name of the queue the job goes into.</summary>
    /// <value>The default value is <see cref="DispatcherQueues.NoQueue"/>.</value>
    public string Queue { get; init; } = DispatcherQueues.NoQueue;

    /// <summary>Gets the working directory of the commands, or <see langword="null"/> for the host's current directory.</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>Gets environment variables set for the commands, on top of the host's environment.</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>
    /// Gets the longest time the job may run, counted from its start, or <see langword="null"/> for
    /// <see cref="DispatcherOptions.DefaultJobTimeout"/>. A job that runs longer is killed with outcome <see cref="JobOutcome.TimedOut"/>.
    /// </summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>
    /// Gets whether the job runs again from its first command when the host died (or stopped) while it was running. By default
    /// such a job is recorded as finished with outcome <see cref="JobOutcome.Interrupted"/>. Needs a job store (<see cref="DispatcherOptions.DataDirectory"/>).
    /// </summary>
    public bool RerunIfInterrupted { get; init; }

    /// <summary>
    /// Gets the job's resource limits, each on top of its queue's (<see cref="QueueOptions.Limits"/>), or <see langword="null"/>.
    /// Enforced only with containment (<see cref="ContainmentOptions"/>).
    /// </summary>
    public JobLimits? Limits { get; init; }

    /// <summary>
    /// Gets the user the job runs as, or <see langword="null"/> for its queue's (<see cref="QueueOptions.RunAs"/>). Accepted
    /// only if it is the queue's user or listed in <see cref="DispatcherOptions.AllowedRunAsUsers"/>.
    /// </summary>
    public string? RunAs { get; init; }

    /// <summary>Gets the job's priority in its queue: a higher one starts first; equal ones start in the order they were enqueued.</summary>
    /// <value>The default value is 0. Negative values are allowed.</value>
    public int Priority { get; init; }

    /// <summary>
    /// Gets the ids of jobs this job waits for: it starts only when every one of them has succeeded. When one of them fails, is
    /// killed, times out, is interrupted or is skipped, this job finishes with outcome <see cref="JobOutcome.Skipped"/> and never
    /// runs. Each id must be pending, running, or a retained finished job when this job is enqueued.
    /// </summary>
    public IReadOnlyList<string>? After { get; init; }

    /// <summary>Gets how long after it is enqueued the job may start at the earliest, or <see langword="null"/> for at once.</summary>
    /// <remarks>At most one of <see cref="Delay"/> and <see cref="StartAt"/> may be set. Both survive restarts as an absolute time.</remarks>
    public TimeSpan? Delay { get; init; }

    /// <summary>Gets the earliest time the job may start, or <see langword="null"/> for at once.</summary>
    public DateTimeOffset? StartAt { get; init; }

    /// <summary>Gets how a failed job is run again, or <see langword="null"/> for never.</summary>
    public RetryPolicy? Retry { get; init; }

    /// <summary>
    /// Gets, per command, an argument vector (the program and its arguments) used as it is instead of splitting the command
    /// string, or <see langword="null"/>. An entry that is <see langword="null"/> leaves its command to be split. When set, it
    /// has one entry per command, and the command string is only what lists and results show (see <see cref="CommandLine.Join"/>).
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string>?>? ArgumentVectors { get; init; }

    /// <summary>Gets text given to every command of the job on its standard input, or <see langword="null"/> for none (<c>/dev/null</c>).</summary>
    public string? StandardInput { get; init; }

    /// <summary>Gets labels (string pairs) to find the job by; they are kept with its result.</summary>
    public IReadOnlyDictionary<string, string>? Labels { get; init; }
}

/// <summary>
/// How a job that failed runs again: up to <see cref="Count"/> more times, each after a delay that grows by <see cref="Backoff"/>.
/// Only failures are retried (a command that exited non-zero or could not start, or a timeout); a job that is killed or interrupted
/// is not. The job keeps its id, queue and place among equal priorities, and each attempt's result is kept
/// (<see cref="JobResult.PreviousAttempts"/>).
/// </summary>
/// <param name="Count">How many times the job may run again after its first attempt.</param>
/// <param name="Delay">How long after a failed attempt the next one may start.</param>
/// <param name="Backoff">The factor the delay grows by after each retry: 1 keeps it constant, 2 doubles it.</param>
public sealed record RetryPolicy(int Count, TimeSpan Delay, double Backoff = 1)
{
    /// <summary>The longest delay between two attempts, whatever the backoff.</summary>
    public static readonly TimeSpan MaxDelay = TimeSpan.FromDays(1);

    /// <summary>Gets the delay before attempt <paramref name="attempt"/> (2 for the first retry).</summary>
    /// <param name="attempt">The attempt number, at least 2.</param>
    /// <returns><see cref="Delay"/> times <see cref="Backoff"/> to the power of <c>attempt - 2</c>, at most <see cref="MaxDelay"/>.</returns>
    public TimeSpan DelayBefore(int attempt)
    {
        var seconds = Delay.TotalSeconds * Math.Pow(Backoff, Math.Max(0, attempt - 2));
        return double.IsFinite(seconds) && seconds < MaxDelay.TotalSeconds ? TimeSpan.FromSeconds(seconds) : MaxDelay;
    }
}
