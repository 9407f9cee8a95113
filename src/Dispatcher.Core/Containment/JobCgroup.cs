using System.Globalization;
using Dispatcher.Interop;

namespace Dispatcher.Containment;

/// <summary>The cgroups of one job: the tracking one first, then one per limited resource whose hierarchy differs.</summary>
internal sealed class JobCgroup
{
    private const int KillRounds = 50;
    private static readonly TimeSpan s_pause = TimeSpan.FromMilliseconds(20);

    private readonly List<(JobContainment.Hierarchy Hierarchy, string Dir)> _dirs;
    private readonly bool _placeSpawningThread;
    private CancellationTokenRegistration _onGraceful;
    private CancellationTokenRegistration _onForceful;
    private string? _stubScript;
    private string[]? _tasksFiles;

    /// <param name="jobId">The job.</param>
    /// <param name="dirs">Its cgroups, the tracking one first (filled in by the caller as it creates them).</param>
    /// <param name="placeSpawningThread">Whether its commands may be spawned by a thread moved into its cgroups (see <see cref="PlacesSpawningThread"/>).</param>
    internal JobCgroup(string jobId, List<(JobContainment.Hierarchy Hierarchy, string Dir)> dirs, bool placeSpawningThread = false)
    {
        JobId = jobId;
        _dirs = dirs;
        _placeSpawningThread = placeSpawningThread;
    }

    public string JobId { get; }

    /// <summary>Gets the directory of the tracking cgroup.</summary>
    public string TrackingDirectory => _dirs[0].Dir;

    private bool TrackedByV2 => _dirs[0].Hierarchy.V2;

    /// <summary>Gets whether the runner must move each command's stub into a cgroup (cgroup v2: see <see cref="CgroupSpawn"/>).</summary>
    public bool PlacedByRunner => _dirs.Exists(d => d.Hierarchy.V2);

    /// <summary>
    /// Gets whether each command is spawned straight into the job's cgroups, without the stub: every cgroup of the job is a
    /// cgroup v1 one whose hierarchy lets this process's threads move themselves (probed when containment starts: see
    /// <see cref="JobContainment.Hierarchy.HomeTasks"/>), and the job has no cgroup v1 process limit (the spawning thread would
    /// count against it while inside). The spawning thread moves itself in (<see cref="EnterSpawningThread"/>), spawns, and moves
    /// itself back (<see cref="LeaveSpawningThread"/>): a child starts in the cgroups of the thread that forks it, so the command
    /// is in them before it runs anything, and a thread's move of itself takes no global lock (see <see cref="CgroupSpawn"/>).
    /// </summary>
    public bool PlacesSpawningThread => _placeSpawningThread && _dirs.Count > 0 && _dirs.TrueForAll(d => !d.Hierarchy.V2 && d.Hierarchy.HomeTasks is not null);

    /// <summary>
    /// Moves the calling thread into each of the job's cgroups (<c>0</c> into each <c>tasks</c> file), so that the process it
    /// spawns next starts in them. The caller spawns and then calls <see cref="LeaveSpawningThread"/>, on the same thread,
    /// with nothing in between that could fork or start a thread.
    /// </summary>
    /// <exception cref="IOException">A cgroup refused the thread; it has been moved back.</exception>
    internal void EnterSpawningThread()
    {
        var tasks = _tasksFiles ??= [.. _dirs.Select(d => Path.Combine(d.Dir, "tasks"))];
        var entered = 0;
        try
        {
            for (; entered < tasks.Length; entered++)
            {
                CgroupFile.WriteZero(tasks[entered]);
            }
        }
        catch (IOException)
        {
            LeaveFirst(entered);
            throw;
        }
    }

    /// <summary>Moves the calling thread back into this process's own cgroups after <see cref="EnterSpawningThread"/>.</summary>
    /// <exception cref="IOException">A hierarchy refused the move back (it accepted the same move when containment started).</exception>
    internal void LeaveSpawningThread() => LeaveFirst(_dirs.Count);

    private void LeaveFirst(int count)
    {
        IOException? failed = null;
        for (var i = count - 1; i >= 0; i--)
        {
            try
            {
                CgroupFile.WriteZero(_dirs[i].Hierarchy.HomeTasks!);
            }
            catch (IOException ex)
            {
                failed ??= ex;
            }
        }

        if (failed is not null)
        {
            throw failed;
        }
    }

    /// <summary>Gets the <c>tasks</c> files of the job's cgroup v1 cgroups, into which each command's stub moves itself.</summary>
    public IEnumerable<string> SelfPlacementFiles => _dirs.Where(d => !d.Hierarchy.V2).Select(d => Path.Combine(d.Dir, "tasks"));

    /// <summary>Gets the stub script of the job's commands, made once (see <see cref="CgroupSpawn.Script"/>).</summary>
    internal string StubScript => _stubScript ??= CgroupSpawn.Script(this);

    /// <summary>Moves a process into the job's cgroup v2 cgroup (before it runs anything of the job's: see <see cref="CgroupSpawn"/>).</summary>
    /// <exception cref="IOException">The kernel refused.</exception>
    public void Place(int pid)
    {
        var text = pid.ToString(CultureInfo.InvariantCulture);
        foreach (var (hierarchy, dir) in _dirs)
        {
            if (hierarchy.V2)
            {
                CgroupFile.Write(Path.Combine(dir, "cgroup.procs"), text);
            }
        }
    }

    /// <summary>The processes in the tracking cgroup now (never this process).</summary>
    public List<int> Processes()
    {
        var list = new List<int>();
        string text;
        try
        {
            text = File.ReadAllText(Path.Combine(TrackingDirectory, "cgroup.procs"));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return list;
        }

        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid != Environment.ProcessId)
            {
                list.Add(pid);
            }
        }

        return list;
    }

    /// <summary>Sends a signal to every process of the job.</summary>
    public void Signal(int signal)
    {
        foreach (var pid in Processes())
        {
            _ = Libc.kill(pid, signal);
        }
    }

    /// <summary>
    /// Kills every process of the job and waits (a bounded while) until none is left: <c>cgroup.kill</c> on cgroup v2 (the
    /// kernel kills them all, forks included); on v1, freeze the cgroup so nothing can fork, SIGKILL every process, thaw.
    /// </summary>
    public async Task KillAsync()
    {
        var cgroupKill = Path.Combine(TrackingDirectory, "cgroup.kill");
        for (var round = 0; round < KillRounds; round++)
        {
            var left = Processes();
            if (left.Count == 0)
            {
                return;
            }

            if (round % 5 == 0)
            {
                if (TrackedByV2 && File.Exists(cgroupKill))
                {
                    TryWrite(cgroupKill, "1");
                }
                else if (!TrackedByV2)
                {
                    await FrozenKillAsync().ConfigureAwait(false);
                }
                else
                {
                    Signal(Libc.SigKill);
                }
            }

            // SIGKILLed processes leave the cgroup once the kernel has torn them down.
            await Task.Delay(s_pause).ConfigureAwait(false);
        }
    }

    /// <summary>The job's memory limit killed a process: the count of OOM kills in its memory cgroup.</summary>
    public long OomKills()
    {
        foreach (var (hierarchy, dir) in _dirs)
        {
            // v2: memory.events "oom_kill N"; v1: memory.oom_control "oom_kill N" (Linux 4.13 and later).
            var file = Path.Combine(dir, hierarchy.V2 ? "memory.events" : "memory.oom_control");
            if (!File.Exists(file))
            {
                continue;
            }

            try
            {
                foreach (var line in File.ReadLines(file))
                {
                    if (line.StartsWith("oom_kill ", StringComparison.Ordinal)
                        && long.TryParse(line.AsSpan(9), NumberStyles.None, CultureInfo.InvariantCulture, out var count))
                    {
                        return count;
                    }
                }
            }
            catch (IOException)
            {
            }
        }

        return 0;
    }

    internal void ApplyLimits(JobLimits limits, IReadOnlyDictionary<string, JobContainment.Hierarchy> resources)
    {
        foreach (var (hierarchy, dir) in _dirs)
        {
            if (limits.MemoryBytes is { } memory && resources.GetValueOrDefault("memory") == hierarchy)
            {
                var bytes = memory.ToString(CultureInfo.InvariantCulture);
                if (hierarchy.V2)
                {
                    CgroupFile.Write(Path.Combine(dir, "memory.max"), bytes);
                    WriteIfPresent(Path.Combine(dir, "memory.swap.max"), "0"); // over the limit means killed, not swapped
                }
                else
                {
                    CgroupFile.Write(Path.Combine(dir, "memory.limit_in_bytes"), bytes);
                    WriteIfPresent(Path.Combine(dir, "memory.memsw.limit_in_bytes"), bytes);
                }
            }

            if (limits.MaxProcesses is { } processes && resources.GetValueOrDefault("pids") == hierarchy)
            {
                CgroupFile.Write(Path.Combine(dir, "pids.max"), processes.ToString(CultureInfo.InvariantCulture));
            }

            if (limits.CpuWeight is { } weight && resources.GetValueOrDefault("cpu") == hierarchy)
            {
                // v1 shares: 1024 is the default, as weight 100 is on v2.
                CgroupFile.Write(Path.Combine(dir, hierarchy.V2 ? "cpu.weight" : "cpu.shares"),
                    (hierarchy.V2 ? weight : Math.Max(2, weight * 1024L / 100)).ToString(CultureInfo.InvariantCulture));
            }
        }
    }

    /// <summary>Gets the kill the job's forceful stop started, or <see langword="null"/> if it was not stopped forcefully.</summary>
    internal Task? Killing { get; private set; }

    internal void Watch(CancellationToken graceful, CancellationToken forceful)
    {
        _onGraceful = graceful.Register(static c => ((JobCgroup)c!).Signal(Libc.SigTerm), this);
        _onForceful = forceful.Register(static c =>
        {
            var cgroup = (JobCgroup)c!;
            cgroup.Killing = cgroup.KillAsync();
        }, this);
    }

    internal void StopWatching()
    {
        _onGraceful.Dispose();
        _onForceful.Dispose();
    }

    /// <summary>Renames the job's cgroups <c>kept.*</c>, so a restarted host leaves their processes alone.</summary>
    internal void MarkKept()
    {
        for (var i = 0; i < _dirs.Count; i++)
        {
            var (hierarchy, dir) = _dirs[i];
            var kept = Path.Combine(Path.GetDirectoryName(dir)!, "kept" + Path.GetFileName(dir)[3..]);
            try
            {
                Directory.Move(dir, kept);
                _dirs[i] = (hierarchy, kept);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Stays "job.*": a restarted host would kill the kept processes; nothing better to do.
            }
        }
    }

    /// <summary>Removes the job's cgroups (they must be empty); false if one is still there.</summary>
    internal bool Remove()
    {
        var removed = true;
        for (var i = _dirs.Count - 1; i >= 0; i--)
        {
            removed &= TryRemoveDirectory(_dirs[i].Dir);
        }

        return removed;
    }

    internal static bool TryRemoveDirectory(string dir)
    {
        try
        {
            Directory.Delete(dir);
            return true;
        }
        catch (DirectoryNotFoundException)
        {
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private async Task FrozenKillAsync()
    {
        var state = Path.Combine(TrackingDirectory, "freezer.state");
        if (!TryWrite(state, "FROZEN"))
        {
            Signal(Libc.SigKill);
            return;
        }

        try
        {
            // Freezing is asynchronous: wait (a bounded while) until every task is frozen, so none forks past the kill.
            for (var i = 0; i < 50 && !ReadsFrozen(state); i++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(2)).ConfigureAwait(false);
            }

            Signal(Libc.SigKill);
        }
        finally
        {
            TryWrite(state, "THAWED");
        }
    }

    private static bool ReadsFrozen(string state)
    {
        try
        {
            return File.ReadAllText(state).Trim() == "FROZEN";
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static bool TryWrite(string path, string text)
    {
        try
        {
            CgroupFile.Write(path, text);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static void WriteIfPresent(string path, string text)
    {
        if (File.Exists(path))
        {
            CgroupFile.Write(path, text);
        }
    }
}

/// <summary>Writes a cgroup control file: one <c>write</c> of the whole text, so the kernel sees one value; its refusal surfaces as an <see cref="IOException"/> naming the file.</summary>
internal static unsafe class CgroupFile
{
    private const int OWrOnly = 1;

    /// <summary>
    /// Writes <c>0</c> into a cgroup v1 <c>tasks</c> file, which moves the calling thread (alone) into that cgroup: open, write,
    /// close through the C library, as this runs for every command spawned in place.
    /// </summary>
    /// <exception cref="IOException">The file could not be opened, or the kernel refused the move.</exception>
    public static void WriteZero(string tasksFile)
    {
        var fd = Libc.open(tasksFile, OWrOnly | Libc.OCloExec);
        if (fd < 0)
        {
            throw new IOException($"Writing '0' to {tasksFile} failed: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}");
        }

        byte zero = (byte)'0';
        var written = Libc.write(fd, &zero, 1);
        var error = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        _ = Libc.close(fd);
        if (written != 1)
        {
            throw new IOException($"Writing '0' to {tasksFile} failed: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(error)}");
        }
    }

    public static void Write(string path, string text)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
            stream.Write(System.Text.Encoding.ASCII.GetBytes(text));
        }
        catch (IOException ex)
        {
            throw new IOException($"Writing '{text}' to {path} failed: {ex.Message}", ex);
        }
    }
}
