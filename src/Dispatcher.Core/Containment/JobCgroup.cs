using System.Globalization;
using Dispatcher.Interop;

namespace Dispatcher.Containment;

/// <summary>The cgroups of one job: the tracking one first, then one per limited resource whose hierarchy differs.</summary>
internal sealed class JobCgroup
{
    private const int KillRounds = 50;
    private static readonly TimeSpan s_pause = TimeSpan.FromMilliseconds(20);

    private readonly List<(JobContainment.Hierarchy Hierarchy, string Dir)> _dirs;
    private CancellationTokenRegistration _onGraceful;
    private CancellationTokenRegistration _onForceful;
    private string? _stubScript;

    internal JobCgroup(string jobId, List<(JobContainment.Hierarchy Hierarchy, string Dir)> dirs)
    {
        JobId = jobId;
        _dirs = dirs;
    }

    public string JobId { get; }

    /// <summary>Gets the directory of the tracking cgroup.</summary>
    public string TrackingDirectory => _dirs[0].Dir;

    private bool TrackedByV2 => _dirs[0].Hierarchy.V2;

    /// <summary>Gets whether the runner must move each command's stub into a cgroup (cgroup v2: see <see cref="CgroupSpawn"/>).</summary>
    public bool PlacedByRunner => _dirs.Exists(d => d.Hierarchy.V2);

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
internal static class CgroupFile
{
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
