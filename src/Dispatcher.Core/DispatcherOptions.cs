namespace Dispatcher;

/// <summary>Options of the dispatcher, bound from the <c>Dispatcher</c> configuration section by <c>AddDispatcher</c>.</summary>
public class DispatcherOptions
{
    /// <summary>The name of the configuration section the options are bound from.</summary>
    public const string SectionName = "Dispatcher";

    /// <summary>
    /// Gets the queues by name. Holds <c>no_queue</c> (no limit), <c>pkg_queue</c> (1) and <c>iocage_queue</c> (1) unless removed;
    /// add entries (or configuration keys such as <c>Dispatcher:Queues:builds:MaxConcurrency</c>) for more.
    /// </summary>
    public IDictionary<string, QueueOptions> Queues { get; } = new Dictionary<string, QueueOptions>(StringComparer.Ordinal)
    {
        [DispatcherQueues.NoQueue] = new() { MaxConcurrency = 0 },
        [DispatcherQueues.PkgQueue] = new() { MaxConcurrency = 1 },
        [DispatcherQueues.IocageQueue] = new() { MaxConcurrency = 1 },
    };

    /// <summary>
    /// Gets or sets the directory where the default job store keeps its journal, or <see langword="null"/> to keep jobs in memory
    /// only (pending jobs are then lost when the host stops). With a store, pending jobs survive restarts and crashes, jobs that
    /// were running come back as interrupted, and retained results survive too.
    /// </summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? DataDirectory { get; set; }

    /// <summary>
    /// Gets or sets whether the journal is flushed to the disk (fsync) before an enqueue returns. Without it an enqueue still
    /// survives a crash of the host (the data is in the operating system), but not a crash of the machine. A job's start,
    /// processes and end are written at once and flushed with the next enqueue or at most 20 ms later, not one by one.
    /// </summary>
    /// <value>The default value is <see langword="true"/>.</value>
    public bool FlushToDisk { get; set; } = true;

    /// <summary>Gets or sets how long a killed job's processes get after SIGTERM before SIGKILL.</summary>
    /// <value>The default value is 5 seconds. Between 0 and 10 minutes.</value>
    public TimeSpan KillGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Gets or sets the timeout of jobs that do not set one, or <see langword="null"/> for none.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public TimeSpan? DefaultJobTimeout { get; set; }

    /// <summary>
    /// Gets or sets how many characters of output a job keeps in memory, over all its commands. Beyond it the oldest output is
    /// dropped and the command's output starts with a line saying how much.
    /// </summary>
    /// <value>The default value is 1 048 576 (1 Mi characters). At least 1 024.</value>
    public int MaxOutputCharacters { get; set; } = 1024 * 1024;

    /// <summary>
    /// Gets or sets how many bytes of output (UTF-8) each job's full log keeps in <see cref="DataDirectory"/>. Past it, the oldest
    /// half is cut off. Without a data directory there are no log files, and <see cref="IDispatcher.ReadLogAsync"/> reads the
    /// output kept in memory (<see cref="MaxOutputCharacters"/>).
    /// </summary>
    /// <value>The default value is 67 108 864 (64 MiB). At least 65 536.</value>
    public long MaxLogBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>Gets or sets how many finished jobs' results are kept for <see cref="IDispatcher.GetResult"/>.</summary>
    /// <value>The default value is 1 000. 0 keeps none.</value>
    public int RetainedJobCount { get; set; } = 1000;

    /// <summary>Gets or sets how long finished jobs' results are kept.</summary>
    /// <value>The default value is 1 hour.</value>
    public TimeSpan RetainedJobAge { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// Gets the patterns of the host's environment variables that jobs do not inherit, because their names look like secrets (a
    /// job running <c>env</c> would otherwise show the host's passwords to anyone who can read its output). <c>*</c> matches any
    /// run of characters; case is ignored, and <c>:</c> in a name counts as <c>__</c>. Remove entries, or clear the list, to pass
    /// more on; add entries (or configuration keys <c>Dispatcher:ExcludedEnvironmentVariables:N</c>) to hold more back. A job's
    /// own <c>env</c> is never filtered.
    /// </summary>
    /// <value>
    /// <c>*PASSWORD*</c>, <c>*PASSWD*</c>, <c>*PASSPHRASE*</c>, <c>*SECRET*</c>, <c>*TOKEN*</c>, <c>*APIKEY*</c>, <c>*API_KEY*</c>,
    /// <c>*PRIVATE_KEY*</c>, <c>*CREDENTIAL*</c>, <c>*CONNECTIONSTRING*</c>, <c>ConnectionStrings__*</c>, <c>Users__*</c>,
    /// <c>Kestrel__Certificates__*</c>, <c>ASPNETCORE_Kestrel__Certificates__*</c>.
    /// </value>
    public IList<string> ExcludedEnvironmentVariables { get; } = [.. Running.EnvironmentFilter.DefaultPatterns];

    /// <summary>Gets or sets how many events a subscriber may fall behind before it is unsubscribed.</summary>
    /// <value>The default value is 1 024 (output events hold up to 16 Ki characters each, so this bounds a stalled subscriber to about 32 MiB). At least 16.</value>
    public int EventBufferCapacity { get; set; } = 1024;

    /// <summary>Gets how the processes of jobs are contained (cgroups per job, and whether they are used at all).</summary>
    public ContainmentOptions Containment { get; } = new();

    /// <summary>
    /// Gets the users a job may ask to run as (<see cref="JobRequest.RunAs"/>) besides its queue's (<see cref="QueueOptions.RunAs"/>).
    /// Empty by default: only the host decides who jobs run as.
    /// </summary>
    public IList<string> AllowedRunAsUsers { get; } = [];
}

/// <summary>Options of one queue.</summary>
public class QueueOptions
{
    /// <summary>Gets or sets how many jobs of the queue may run at once; 0 means no limit.</summary>
    /// <value>The default value is 1: one job at a time, first in first out.</value>
    public int MaxConcurrency { get; set; } = 1;

    /// <summary>Gets or sets the resource limits of the queue's jobs, or <see langword="null"/> for none (needs containment).</summary>
    public JobLimits? Limits { get; set; }

    /// <summary>Gets or sets what happens to a job's processes still running when its last command ends (needs containment).</summary>
    /// <value>The default value is <see cref="LeftoverProcesses.Keep"/>.</value>
    public LeftoverProcesses Leftovers { get; set; } = LeftoverProcesses.Keep;

    /// <summary>
    /// Gets or sets the user the queue's jobs run as (uid, gid and supplementary groups of that user, set without a shell through
    /// <c>setpriv</c>), or <see langword="null"/> for the host's own user.
    /// </summary>
    public string? RunAs { get; set; }
}
