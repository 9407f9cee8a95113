namespace Dispatcher;

/// <summary>The full result of a finished job.</summary>
public sealed class JobResult
{
    /// <summary>Creates a result (for job stores and tests; the dispatcher makes its own).</summary>
    /// <param name="id">The job id.</param>
    /// <param name="queue">The queue.</param>
    /// <param name="commands">All the job's commands.</param>
    /// <param name="outcome">How it ended.</param>
    /// <param name="commandResults">One result per command that started.</param>
    /// <param name="enqueuedAt">When it was enqueued.</param>
    /// <param name="startedAt">When it started, if it did.</param>
    /// <param name="finishedAt">When it finished.</param>
    public JobResult(string id, string queue, IReadOnlyList<string> commands, JobOutcome outcome,
        IReadOnlyList<CommandResult> commandResults, DateTimeOffset enqueuedAt, DateTimeOffset? startedAt, DateTimeOffset finishedAt)
    {
        Id = id;
        Queue = queue;
        Commands = commands;
        Outcome = outcome;
        CommandResults = commandResults;
        EnqueuedAt = enqueuedAt;
        StartedAt = startedAt;
        FinishedAt = finishedAt;
    }

    /// <summary>Gets the job id.</summary>
    public string Id { get; }

    /// <summary>Gets the name of the job's queue.</summary>
    public string Queue { get; }

    /// <summary>Gets the job's commands, including those that never ran.</summary>
    public IReadOnlyList<string> Commands { get; }

    /// <summary>Gets how the job ended.</summary>
    public JobOutcome Outcome { get; }

    /// <summary>Gets one result per command that started, in order; commands that never started have none.</summary>
    public IReadOnlyList<CommandResult> CommandResults { get; }

    /// <summary>Gets when the job was enqueued.</summary>
    public DateTimeOffset EnqueuedAt { get; }

    /// <summary>Gets when the job started, or <see langword="null"/> if it never did (killed while pending).</summary>
    public DateTimeOffset? StartedAt { get; }

    /// <summary>Gets when the job finished.</summary>
    public DateTimeOffset FinishedAt { get; }

    /// <summary>
    /// Gets the index of the command that failed when <see cref="Outcome"/> is <see cref="JobOutcome.Failed"/>, otherwise <see langword="null"/>.
    /// </summary>
    public int? FailedCommand => Outcome == JobOutcome.Failed && CommandResults.Count > 0 ? CommandResults.Count - 1 : null;

    /// <summary>Gets what the job's commands used together (CPU times added, the largest peak), or <see langword="null"/> if no command reported it.</summary>
    public CommandUsage? Usage => CommandUsage.Total(CommandResults.Select(c => c.Usage));

    /// <summary>Gets the exit code of the last command that ran, or <see langword="null"/> if none ran.</summary>
    public int? ExitCode => CommandResults.Count > 0 ? CommandResults[^1].ExitCode : null;

    /// <summary>Gets the attempt this result is of: 1 for the first run, more when the job was retried (<see cref="JobRequest.Retry"/>).</summary>
    public int Attempt { get; init; } = 1;

    /// <summary>Gets the results of the earlier attempts, oldest first; empty when the job ran once.</summary>
    public IReadOnlyList<JobResult> PreviousAttempts { get; init; } = [];

    /// <summary>Gets the job's labels (<see cref="JobRequest.Labels"/>), or <see langword="null"/>.</summary>
    public IReadOnlyDictionary<string, string>? Labels { get; init; }

    /// <summary>Gets the job's idempotency key (<see cref="JobRequest.IdempotencyKey"/>), or <see langword="null"/>.</summary>
    public string? IdempotencyKey { get; init; }
}

/// <summary>The result of one command of a job.</summary>
public sealed class CommandResult
{
    /// <summary>Creates a command result (for job stores and tests).</summary>
    /// <param name="index">The command's index.</param>
    /// <param name="command">The command string.</param>
    /// <param name="output">The kept output.</param>
    /// <param name="droppedOutputCharacters">How many characters were dropped from its front.</param>
    /// <param name="exitCode">The exit code.</param>
    /// <param name="startedAt">When it started.</param>
    /// <param name="finishedAt">When it exited.</param>
    public CommandResult(int index, string command, string output, long droppedOutputCharacters, int exitCode,
        DateTimeOffset startedAt, DateTimeOffset finishedAt)
    {
        Index = index;
        Command = command;
        Output = output;
        DroppedOutputCharacters = droppedOutputCharacters;
        ExitCode = exitCode;
        StartedAt = startedAt;
        FinishedAt = finishedAt;
    }

    /// <summary>Gets the command's index in <see cref="JobResult.Commands"/>.</summary>
    public int Index { get; }

    /// <summary>Gets the command string.</summary>
    public string Command { get; }

    /// <summary>
    /// Gets the command's merged standard output and standard error as kept by the dispatcher: the tail of it when the job
    /// printed more than <see cref="DispatcherOptions.MaxOutputCharacters"/>, preceded by a line saying how much was dropped.
    /// </summary>
    public string Output { get; }

    /// <summary>Gets how many characters of output were dropped from the front of <see cref="Output"/>.</summary>
    public long DroppedOutputCharacters { get; }

    /// <summary>Gets the exit code. A process ended by a signal reports 128 plus the signal number.</summary>
    public int ExitCode { get; }

    /// <summary>Gets when the command started.</summary>
    public DateTimeOffset StartedAt { get; }

    /// <summary>Gets when the command exited.</summary>
    public DateTimeOffset FinishedAt { get; }

    /// <summary>Gets what the command used, or <see langword="null"/> where the runner does not report it (or for a job a journal from before usage was kept recorded); kept across restarts with a data directory.</summary>
    public CommandUsage? Usage { get; init; }
}
