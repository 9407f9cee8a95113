using System.Text.Json.Nodes;

namespace Dispatcher.Client;

/// <summary>What <c>rpc/identify</c> answered.</summary>
public sealed class RemoteServerInfo
{
    /// <summary>Gets the peer's type (<c>"server"</c>).</summary>
    public required string Type { get; init; }

    /// <summary>Gets the server's host name.</summary>
    public required string HostName { get; init; }
}

/// <summary>A pending or running job, as <c>list</c> reports it.</summary>
public sealed class RemoteJob
{
    /// <summary>Gets the job id.</summary>
    public required string Id { get; init; }

    /// <summary>Gets the queue the job is in.</summary>
    public required string Queue { get; init; }

    /// <summary>Gets the state: <c>"pending"</c> or <c>"running"</c>.</summary>
    public required string State { get; init; }

    /// <summary>Gets the job's commands.</summary>
    public required IReadOnlyList<string> Commands { get; init; }

    /// <summary>Gets the position in a queue with a concurrency limit (0 is the head), or <see langword="null"/>.</summary>
    public int? QueuePosition { get; init; }
}

/// <summary>A job to run. Only <see cref="Id"/> and <see cref="Commands"/> are required.</summary>
public sealed class RemoteJobSpec
{
    /// <summary>Gets the job id (unique among pending and running jobs).</summary>
    public required string Id { get; init; }

    /// <summary>Gets the command strings, run in order (split into program and arguments by the server; there is no shell).</summary>
    public required IReadOnlyList<string> Commands { get; init; }

    /// <summary>Gets the queue (the server's default <c>no_queue</c> when <see langword="null"/>).</summary>
    public string? Queue { get; init; }

    /// <summary>Gets the working directory of the commands.</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>Gets environment variables set for the commands.</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>Gets the job's time limit.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Gets whether a host with a job store reruns the job when it was interrupted by a stop or crash.</summary>
    public bool? RerunIfInterrupted { get; init; }

    /// <summary>Gets the job's priority in its queue: higher starts first; equal priorities start in the order accepted (server default 0).</summary>
    public int? Priority { get; init; }

    /// <summary>
    /// Gets the ids of jobs that must succeed before this one starts. Each must be pending, running or in the server's retained
    /// history when the job is sent; when one does not succeed, this job ends <c>skipped</c> without running.
    /// </summary>
    public IReadOnlyList<string>? After { get; init; }

    /// <summary>Gets how long after its acceptance the job may start at the earliest. Give this or <see cref="StartAt"/>, not both.</summary>
    public TimeSpan? Delay { get; init; }

    /// <summary>Gets the earliest time the job may start. Give this or <see cref="Delay"/>, not both.</summary>
    public DateTimeOffset? StartAt { get; init; }

    /// <summary>Gets how a failed attempt (a command exited non-zero or could not start, or the job timed out) is retried.</summary>
    public RemoteRetryPolicy? Retry { get; init; }

    /// <summary>Gets labels kept with the job and its result (shown by list, history and finished events).</summary>
    public IReadOnlyDictionary<string, string>? Labels { get; init; }

    /// <summary>Gets text every command of the job reads on its standard input (instead of an empty input).</summary>
    public string? StandardInput { get; init; }

    /// <summary>
    /// Gets a key that makes sending the job again harmless: while a job with the same key is pending, running or retained,
    /// the server creates nothing and names the existing job as started.
    /// </summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>Gets the job's resource limits, each over its queue's; the server enforces them only with containment on.</summary>
    public RemoteJobLimits? Limits { get; init; }

    /// <summary>Gets the user the job runs as; the server accepts only its queue's user or one it allows.</summary>
    public string? RunAs { get; init; }

    /// <summary>
    /// Gets further members of the job object, sent as they are: options a newer server offers before this client names them.
    /// A server that does not know a member rejects the job with a message naming it.
    /// </summary>
    public IReadOnlyDictionary<string, JsonNode?>? AdditionalMembers { get; init; }
}

/// <summary>How a job's failed attempts are retried: <see cref="Count"/> more attempts, the k-th after <see cref="Delay"/> × <see cref="Backoff"/>^(k-1).</summary>
public sealed class RemoteRetryPolicy
{
    /// <summary>Gets how many more attempts a failed job gets (1 or more).</summary>
    public required int Count { get; init; }

    /// <summary>Gets the wait before the first retry (server default: none).</summary>
    public TimeSpan? Delay { get; init; }

    /// <summary>Gets the factor each further wait is multiplied by (server default 1).</summary>
    public double? Backoff { get; init; }
}

/// <summary>Resource limits of one job, each optional. A server without containment accepts them and logs that they are not enforced.</summary>
public sealed class RemoteJobLimits
{
    /// <summary>Gets the memory the job's processes may use together, in bytes; over it the job ends <c>oom_killed</c>.</summary>
    public long? MemoryBytes { get; init; }

    /// <summary>Gets how many processes the job may have at once; a fork over it fails.</summary>
    public int? MaxProcesses { get; init; }

    /// <summary>Gets the job's CPU weight, 1 to 10 000 (100 is an ordinary share).</summary>
    public int? CpuWeight { get; init; }
}

/// <summary>What <c>run</c> answered.</summary>
public sealed class RemoteRunResult
{
    /// <summary>Gets the ids of the jobs that were accepted, in request order.</summary>
    public required IReadOnlyList<string> Started { get; init; }

    /// <summary>Gets the ids that were rejected, each with the server's reason.</summary>
    public required IReadOnlyDictionary<string, string> Rejected { get; init; }
}

/// <summary>One command of a job: its output and exit code so far.</summary>
public sealed class RemoteCommandResult
{
    /// <summary>Gets the command string.</summary>
    public required string Command { get; init; }

    /// <summary>Gets its output (stdout and stderr merged), or in a running event only what was printed since the previous one.</summary>
    public required string Output { get; init; }

    /// <summary>Gets its exit code once it ended, otherwise <see langword="null"/>.</summary>
    public int? ExitCode { get; init; }
}

/// <summary>The details of a job: a finished job from <c>history</c>, or the details a running or finished event carries.</summary>
public sealed class RemoteJobResult
{
    /// <summary>Gets the job id.</summary>
    public required string Id { get; init; }

    /// <summary>Gets the state: <c>"running"</c> or <c>"finished"</c>.</summary>
    public required string State { get; init; }

    /// <summary>Gets the queue, when the server said it (history does).</summary>
    public string? Queue { get; init; }

    /// <summary>Gets all of the job's commands.</summary>
    public required IReadOnlyList<string> Commands { get; init; }

    /// <summary>Gets the outcome of a finished job: <c>succeeded</c>, <c>failed</c>, <c>killed</c>, <c>timed_out</c>, <c>interrupted</c>, or another a newer server reports.</summary>
    public string? Outcome { get; init; }

    /// <summary>Gets when the job started (absent for a job killed while pending).</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>Gets when the job finished.</summary>
    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>Gets the command running now (running events only).</summary>
    public string? CurrentCommand { get; init; }

    /// <summary>Gets each command that ran, with its output and exit code, in command order.</summary>
    public required IReadOnlyList<RemoteCommandResult> Results { get; init; }

    /// <summary>Gets the details object as the server sent it, with any member this client does not name.</summary>
    public required JsonObject Raw { get; init; }

    /// <summary>Gets whether the job finished with outcome <c>succeeded</c>.</summary>
    public bool Succeeded => Outcome == "succeeded";
}

/// <summary>What a <see cref="RemoteEvent"/> reports.</summary>
public enum RemoteEventKind
{
    /// <summary>An event this client does not name (another event name, or a job state a newer server adds); see <see cref="RemoteEvent.Args"/>.</summary>
    Other,

    /// <summary>A job entered its queue.</summary>
    JobPending,

    /// <summary>A job started, or printed output (the details hold the output since the previous event).</summary>
    JobRunning,

    /// <summary>A job ended, whatever the outcome (the details hold its whole kept output).</summary>
    JobFinished,

    /// <summary>
    /// Not from the server: the subscription lost its connection and is subscribed again. When <see cref="RemoteEvent.Sequence"/>
    /// is set, the subscription resumed after that event and the server sends what was missed (or a <see cref="Gap"/> when it no
    /// longer holds it); otherwise (a server without resumable events) events sent meanwhile may be lost: re-read the state you
    /// need (<c>list</c>, <c>history</c>).
    /// </summary>
    Reconnected,

    /// <summary>
    /// From the server, after a reconnect: events after the last one received are no longer held (or the server restarted), so
    /// some are lost. Re-read the state you need (<c>list</c>, <c>history</c>); the events that follow are complete again.
    /// </summary>
    Gap,
}

/// <summary>One event from a subscription.</summary>
public sealed class RemoteEvent
{
    /// <summary>Gets what the event reports.</summary>
    public required RemoteEventKind Kind { get; init; }

    /// <summary>Gets the event name (<c>"dispatcher"</c> for job events; empty for <see cref="RemoteEventKind.Reconnected"/>).</summary>
    public required string Name { get; init; }

    /// <summary>Gets the job id of a job event.</summary>
    public string? JobId { get; init; }

    /// <summary>
    /// Gets the event's sequence number (<c>seq</c>; on a <see cref="RemoteEventKind.Reconnected"/> event, the one the
    /// subscription resumed after), or <see langword="null"/> when the server does not number its events.
    /// </summary>
    public long? Sequence { get; init; }

    /// <summary>Gets the job details of a running or finished event.</summary>
    public RemoteJobResult? Details { get; init; }

    /// <summary>Gets the event's <c>args</c> as the server sent them (empty for <see cref="RemoteEventKind.Reconnected"/>).</summary>
    public required JsonObject Args { get; init; }
}

/// <summary>Output a followed job printed.</summary>
public sealed class RemoteOutputChunk
{
    /// <summary>Gets the command that printed it.</summary>
    public required string Command { get; init; }

    /// <summary>Gets the text, in order after the previous chunk of the same command.</summary>
    public required string Text { get; init; }
}
