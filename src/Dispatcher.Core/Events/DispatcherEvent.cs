namespace Dispatcher.Events;

/// <summary>
/// Something that happened to a job. The family is closed: match on <see cref="JobPendingEvent"/>, <see cref="JobStartedEvent"/>,
/// <see cref="JobCommandStartedEvent"/>, <see cref="JobOutputEvent"/>, <see cref="JobCommandFinishedEvent"/> and <see cref="JobFinishedEvent"/>.
/// </summary>
/// <remarks>
/// For one job the events come in this order: one pending event, then (unless it was killed while pending) one started event,
/// for each command that runs a command-started event, its output events and a command-finished event, and always exactly one finished event.
/// </remarks>
public abstract class DispatcherEvent
{
    private protected DispatcherEvent(string jobId, DateTimeOffset timestamp)
    {
        JobId = jobId;
        Timestamp = timestamp;
    }

    /// <summary>Gets the id of the job the event is about.</summary>
    public string JobId { get; }

    /// <summary>Gets when the event happened.</summary>
    public DateTimeOffset Timestamp { get; }
}

/// <summary>A job was accepted into its queue.</summary>
public sealed class JobPendingEvent : DispatcherEvent
{
    internal JobPendingEvent(JobInfo job, DateTimeOffset timestamp) : base(job.Id, timestamp) => Job = job;

    /// <summary>Gets the job as it was when it was enqueued.</summary>
    public JobInfo Job { get; }
}

/// <summary>A job left its queue and started running.</summary>
public sealed class JobStartedEvent : DispatcherEvent
{
    internal JobStartedEvent(JobInfo job, DateTimeOffset timestamp) : base(job.Id, timestamp) => Job = job;

    /// <summary>Gets the job as it was when it started.</summary>
    public JobInfo Job { get; }
}

/// <summary>One command of a running job started.</summary>
public sealed class JobCommandStartedEvent : DispatcherEvent
{
    internal JobCommandStartedEvent(string jobId, int index, string command, DateTimeOffset timestamp) : base(jobId, timestamp)
    {
        Index = index;
        Command = command;
    }

    /// <summary>Gets the command's index in the job.</summary>
    public int Index { get; }

    /// <summary>Gets the command string.</summary>
    public string Command { get; }
}

/// <summary>A command of a running job printed something (standard output and standard error merged).</summary>
public sealed class JobOutputEvent : DispatcherEvent
{
    internal JobOutputEvent(string jobId, int index, string text, DateTimeOffset timestamp) : base(jobId, timestamp)
    {
        Index = index;
        Text = text;
    }

    /// <summary>Gets the index of the command that printed the text.</summary>
    public int Index { get; }

    /// <summary>Gets the text printed since the previous output event of this command.</summary>
    public string Text { get; }
}

/// <summary>One command of a running job exited.</summary>
public sealed class JobCommandFinishedEvent : DispatcherEvent
{
    internal JobCommandFinishedEvent(string jobId, int index, string command, int exitCode, DateTimeOffset timestamp) : base(jobId, timestamp)
    {
        Index = index;
        Command = command;
        ExitCode = exitCode;
    }

    /// <summary>Gets the command's index in the job.</summary>
    public int Index { get; }

    /// <summary>Gets the command string.</summary>
    public string Command { get; }

    /// <summary>Gets the command's exit code.</summary>
    public int ExitCode { get; }
}

/// <summary>A job finished, whatever the outcome. Every job gets exactly one.</summary>
public sealed class JobFinishedEvent : DispatcherEvent
{
    internal JobFinishedEvent(JobResult result) : base(result.Id, result.FinishedAt) => Result = result;

    /// <summary>Gets the job's full result.</summary>
    public JobResult Result { get; }
}
