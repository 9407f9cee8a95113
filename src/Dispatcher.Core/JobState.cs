namespace Dispatcher;

/// <summary>Where a job is in its life.</summary>
public enum JobState
{
    /// <summary>Waiting in its queue.</summary>
    Pending,

    /// <summary>One of its commands is running.</summary>
    Running,

    /// <summary>Ended; see <see cref="JobResult.Outcome"/>.</summary>
    Finished,
}

/// <summary>How a finished job ended.</summary>
public enum JobOutcome
{
    /// <summary>Every command exited with code 0.</summary>
    Succeeded,

    /// <summary>A command exited non-zero or could not be started; later commands did not run.</summary>
    Failed,

    /// <summary>The job was killed, either while pending (it never started) or while running.</summary>
    Killed,

    /// <summary>The job ran longer than its timeout and was killed.</summary>
    TimedOut,

    /// <summary>The job was running when the host stopped or died, and did not complete.</summary>
    Interrupted,

    /// <summary>A job it depended on (<see cref="JobRequest.After"/>) did not succeed, so it never ran.</summary>
    Skipped,
    /// <summary>A command failed after the kernel killed a process of the job for going over its memory limit (<see cref="JobLimits.MemoryBytes"/>).</summary>
    OomKilled,
}
