namespace Dispatcher.Scheduling;

/// <summary>
/// What the scheduler knows of a job: its queue, priority, earliest start and dependencies. The dispatcher's own job type derives
/// from it, so the scheduler's indexes hold the dispatcher's jobs themselves (no second object per pending job).
/// </summary>
internal abstract class ScheduledJob
{
    protected ScheduledJob(string id, string queue, int priority)
    {
        Id = id;
        Queue = queue;
        Priority = priority;
    }

    /// <summary>Gets the job id, unique among the jobs the scheduler holds.</summary>
    public string Id { get; }

    /// <summary>Gets the name of the job's queue.</summary>
    public string Queue { get; }

    /// <summary>Gets the priority: higher starts first; equal priorities start in submission order.</summary>
    public int Priority { get; }

    /// <summary>Gets the submission order, assigned by the scheduler (kept across a retry, so a retried job keeps its place).</summary>
    public long Sequence { get; internal set; }

    /// <summary>Gets or sets the earliest time the job may start, or <see langword="null"/> for at once.</summary>
    public DateTimeOffset? NotBefore { get; set; }

    /// <summary>Gets where the job is in the scheduler.</summary>
    public ScheduleState ScheduleState { get; internal set; }

    internal int UnmetDependencies { get; set; }

    /// <summary>Whether the job waits for <c>Release</c> (its record is not durable yet); later jobs of its queue wait behind it.</summary>
    internal bool Held { get; set; }

    /// <summary>Jobs waiting for this one (null while none: most jobs have none, and an empty list costs 32 bytes a job).</summary>
    internal List<ScheduledJob>? Dependents { get; set; }

    internal SchedulerQueue QueueState { get; set; } = null!;
}

/// <summary>Where a job is in the scheduler.</summary>
internal enum ScheduleState
{
    /// <summary>Not (or no longer) held by the scheduler.</summary>
    None,

    /// <summary>Waits for jobs it depends on to succeed.</summary>
    WaitingForDependencies,

    /// <summary>Waits for its start time (a delayed start or a retry's delay).</summary>
    Delayed,

    /// <summary>May start as soon as its queue has room and is not paused.</summary>
    Ready,

    /// <summary>Started.</summary>
    Running,
}
