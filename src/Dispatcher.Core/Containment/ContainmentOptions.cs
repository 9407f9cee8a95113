namespace Dispatcher;

/// <summary>
/// How the dispatcher contains the processes of its jobs (the <c>Dispatcher:Containment</c> configuration section). With
/// containment on, each job runs in cgroups of its own: every process the job starts is in them whatever it does (a process
/// that calls <c>setsid</c> and is re-parented to init is still found), a kill reaches all of them, and
/// <see cref="JobLimits"/> can be enforced.
/// </summary>
public sealed class ContainmentOptions
{
    /// <summary>Gets or sets whether and how jobs are put in cgroups.</summary>
    /// <value>The default value is <see cref="ContainmentMode.Off"/>: a job's processes are found through their session and parent ids.</value>
    public ContainmentMode Mode { get; set; } = ContainmentMode.Off;

    /// <summary>
    /// Gets or sets the cgroup (a path inside each cgroup hierarchy, such as <c>/system.slice/dispatcher.service</c>) under which
    /// the dispatcher creates its own, or <see langword="null"/> for the cgroup the host runs in. It must be writable by the host:
    /// under systemd, give the service <c>Delegate=yes</c>.
    /// </summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? CgroupParent { get; set; }
}

/// <summary>Whether and how the dispatcher puts jobs in cgroups.</summary>
public enum ContainmentMode
{
    /// <summary>No cgroups: a job's processes are found through their session and parent process ids.</summary>
    Off,

    /// <summary>
    /// Cgroups where the host can create them: cgroup v2 (pure, or the unified hierarchy of a hybrid setup) to track and kill,
    /// otherwise the cgroup v1 <c>freezer</c> hierarchy; limits through v2 controllers where enabled, otherwise the v1 hierarchy
    /// of the resource. Where neither works, the dispatcher logs why and runs as with <see cref="Off"/>.
    /// </summary>
    Auto,

    /// <summary>Like <see cref="Auto"/>, but the jobs must be tracked by cgroup v2: the dispatcher does not start without it.</summary>
    CgroupV2,

    /// <summary>Like <see cref="Auto"/>, but the jobs must be tracked by the cgroup v1 freezer: the dispatcher does not start without it.</summary>
    CgroupV1,
}

/// <summary>What happens to processes a job started that are still running when the job's last command has ended.</summary>
public enum LeftoverProcesses
{
    /// <summary>They keep running (daemons an administration command starts survive it); their cgroup is removed once they end.</summary>
    Keep,

    /// <summary>They are killed when the job ends.</summary>
    Kill,
}

/// <summary>
/// Resource limits of a job, enforced through its cgroups (needs <see cref="ContainmentOptions.Mode"/> other than
/// <see cref="ContainmentMode.Off"/>). A job's own limits win over its queue's, one by one.
/// </summary>
public sealed record JobLimits
{
    /// <summary>Gets the most memory (bytes) the job's processes may use together; over it the kernel kills one of them and the job ends <see cref="JobOutcome.OomKilled"/>.</summary>
    public long? MemoryBytes { get; init; }

    /// <summary>Gets how many processes (and threads) the job may have at once; a fork over it fails.</summary>
    public int? MaxProcesses { get; init; }

    /// <summary>Gets the job's CPU weight, between 1 and 10 000 (100 is the share of an ordinary cgroup).</summary>
    public int? CpuWeight { get; init; }

    /// <summary>What is wrong with the limits (each message starts with <paramref name="owner"/>), or <see langword="null"/>.</summary>
    internal string? Problem(string owner) =>
        MemoryBytes is <= 0 ? $"{owner} has a memory limit of {MemoryBytes} bytes; it must be positive."
        : MaxProcesses is <= 0 ? $"{owner} has a process limit of {MaxProcesses}; it must be at least 1."
        : CpuWeight is < 1 or > 10000 ? $"{owner} has a CPU weight of {CpuWeight}; it must be between 1 and 10000."
        : null;

    /// <summary>Gets whether no limit is set.</summary>
    internal bool IsEmpty => MemoryBytes is null && MaxProcesses is null && CpuWeight is null;

    /// <summary>Each limit of <paramref name="job"/> where set, otherwise that of <paramref name="queue"/>.</summary>
    internal static JobLimits? Combine(JobLimits? queue, JobLimits? job) => (queue, job) switch
    {
        (null, _) => job,
        (_, null) => queue,
        _ => new JobLimits
        {
            MemoryBytes = job.MemoryBytes ?? queue.MemoryBytes,
            MaxProcesses = job.MaxProcesses ?? queue.MaxProcesses,
            CpuWeight = job.CpuWeight ?? queue.CpuWeight,
        },
    };
}
