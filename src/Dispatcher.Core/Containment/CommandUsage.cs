namespace Dispatcher;

/// <summary>
/// What a command (or a whole job) used: CPU time and peak memory, as the kernel reports them when the command is reaped
/// (<c>wait4</c>): the command's process together with every descendant it waited for.
/// </summary>
public sealed record CommandUsage
{
    /// <summary>Gets the CPU time spent in user mode.</summary>
    public TimeSpan UserCpuTime { get; init; }

    /// <summary>Gets the CPU time spent in the kernel.</summary>
    public TimeSpan SystemCpuTime { get; init; }

    /// <summary>
    /// Gets the largest resident set size of the command's process, or of a descendant it waited for, in bytes; or
    /// <see langword="null"/> when it is not known. Linux starts a process spawned by the host with the host's own peak as its
    /// peak, so the kernel's figure is the command's only when it is above the host's: below that, it is unknown.
    /// </summary>
    public long? PeakMemoryBytes { get; init; }

    /// <summary>The total of several commands: CPU times added, the largest known peak.</summary>
    internal static CommandUsage? Total(IEnumerable<CommandUsage?> usages)
    {
        CommandUsage? total = null;
        foreach (var u in usages)
        {
            if (u is null)
            {
                continue;
            }

            total = total is null ? u : new CommandUsage
            {
                UserCpuTime = total.UserCpuTime + u.UserCpuTime,
                SystemCpuTime = total.SystemCpuTime + u.SystemCpuTime,
                PeakMemoryBytes = total.PeakMemoryBytes is { } a && u.PeakMemoryBytes is { } b ? Math.Max(a, b) : total.PeakMemoryBytes ?? u.PeakMemoryBytes,
            };
        }

        return total;
    }
}

/// <summary>Implemented by the dispatcher's <see cref="Running.IJobOutput"/>: a runner that knows what a command used reports it here.</summary>
internal interface ICommandUsageSink
{
    void Report(CommandUsage usage);
}
