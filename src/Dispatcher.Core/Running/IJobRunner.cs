namespace Dispatcher.Running;

/// <summary>
/// Runs one command of a job as an external process. The default implementation runs it through CliWrap, in a session and process
/// group of its own, and stops the whole process tree when asked. Replace it (for example to run commands in a container) by
/// registering another implementation before <c>AddDispatcher</c>.
/// </summary>
/// <remarks>
/// The dispatcher calls <see cref="RunAsync"/> for one command of a job at a time, but for many jobs concurrently: implementations must be thread-safe.
/// </remarks>
public interface IJobRunner
{
    /// <summary>Runs a command to its end and returns its exit code.</summary>
    /// <param name="command">What to run.</param>
    /// <param name="output">Receives the merged standard output and standard error as it is printed. It may be called from two threads at once.</param>
    /// <param name="forcefulCancellationToken">When cancelled, every process of the command must be killed at once (SIGKILL); the method then returns or throws promptly.</param>
    /// <param name="gracefulCancellationToken">When cancelled, every process of the command's tree should be asked to stop (SIGTERM); the method still returns the exit code when the process exits.</param>
    /// <returns>The exit code; 128 plus the signal number for a process ended by a signal.</returns>
    /// <exception cref="Exception">Any exception means the command could not run: the dispatcher records its message in the command's output and fails the job.</exception>
    Task<int> RunAsync(JobCommand command, IJobOutput output, CancellationToken forcefulCancellationToken, CancellationToken gracefulCancellationToken);
}

/// <summary>Receives the output of a running command.</summary>
public interface IJobOutput
{
    /// <summary>Appends text printed by the command.</summary>
    /// <param name="text">The text.</param>
    void Write(ReadOnlySpan<char> text);
}

/// <summary>
/// Implemented by the dispatcher's <see cref="IJobOutput"/>: a runner that starts a local process reports its pid, which the
/// dispatcher journals with the process's start time, to end what a crash of the host leaves running.
/// </summary>
internal interface IJobProcessListener
{
    /// <summary>Called once the command's process exists (it leads a session of its own id), before its output is read.</summary>
    /// <param name="processId">The pid.</param>
    /// <param name="startTime">Its start time in clock ticks since boot when the runner knows it without reading <c>/proc</c>
    /// (<see cref="ProcessTree.StartTimeBetween"/>), or null.</param>
    void ProcessStarted(int processId, ulong? startTime);
}

/// <summary>One command of a job, ready to run.</summary>
public sealed class JobCommand
{
    internal JobCommand(string jobId, int index, string text, IReadOnlyList<string> arguments, string? workingDirectory,
        IReadOnlyDictionary<string, string>? environment)
    {
        JobId = jobId;
        Index = index;
        Text = text;
        Program = arguments[0];
        Arguments = arguments.Skip(1).ToArray();
        WorkingDirectory = workingDirectory;
        Environment = environment;
    }

    /// <summary>Gets the id of the job.</summary>
    public string JobId { get; }

    /// <summary>Gets the command's index in the job.</summary>
    public int Index { get; }

    /// <summary>Gets the command string as it was submitted.</summary>
    public string Text { get; }

    /// <summary>Gets the program: a path, or a name to look up on <c>PATH</c>.</summary>
    public string Program { get; }

    /// <summary>Gets the arguments, never passed through a shell.</summary>
    public IReadOnlyList<string> Arguments { get; }

    /// <summary>Gets the working directory, or <see langword="null"/> for the host's.</summary>
    public string? WorkingDirectory { get; }

    /// <summary>Gets environment variables to set on top of the host's, or <see langword="null"/>.</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; }

    /// <summary>Gets the job's cgroups, which the command must start in, or <see langword="null"/> without containment.</summary>
    internal Containment.JobCgroup? Cgroup { get; init; }

    /// <summary>Gets the user the command runs as, or <see langword="null"/> for the host's own.</summary>
    internal Containment.RunAsUser? RunAs { get; init; }

    /// <summary>
    /// Gets a file whose content is the command's standard input (<see cref="JobRequest.StandardInput"/>), or <see langword="null"/>
    /// for none (<c>/dev/null</c>). The dispatcher deletes the file when the job ends.
    /// </summary>
    public string? StandardInputFile { get; init; }
}
