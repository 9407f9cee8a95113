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
}
