using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Containment;

/// <summary>
/// Puts each job in cgroups of its own, under one cgroup of this dispatcher instance (<c>dispatcher.*</c>) in the host's own
/// cgroup or the configured parent: the tracking cgroup (v2, or the v1 freezer) holds every process of the job, and for each
/// limit the job has, the cgroup of that resource's hierarchy (v2 controller where enabled, otherwise v1) enforces it.
/// </summary>
/// <remarks>
/// Each command starts in its cgroups before it runs anything: the runner spawns a small <c>/bin/sh</c> stub that moves itself
/// into the job's cgroup v1 cgroups, is moved by the runner into its cgroup v2 cgroup, then <c>exec</c>s the command (see
/// <see cref="CgroupSpawn"/>).
/// With a data directory the instance cgroup's name is derived from it, so a restarted host finds the cgroups of the jobs that
/// were running when it died (<c>job.*</c>) and kills what is left in them; cgroups of finished jobs whose processes were kept
/// are renamed <c>kept.*</c> and left alone.
/// </remarks>
internal sealed partial class JobContainment : IDisposable
{
    private const long SweepIntervalMilliseconds = 1000;
    private static readonly TimeSpan s_killWait = TimeSpan.FromSeconds(3);
    private static long s_instances;

    private readonly ILogger _logger;
    private readonly Hierarchy _tracker;
    private readonly Dictionary<string, Hierarchy> _resources;
    private readonly ConcurrentDictionary<JobCgroup, byte> _kept = new();

    // Leftovers being killed in the background (End with LeftoverProcesses.Kill): Dispose waits for them, or the cgroups they
    // remove afterwards would keep this instance's cgroups from being removed (seen: an empty dispatcher.* left per test run).
    private readonly ConcurrentDictionary<Task, byte> _killing = new();
    private long _sequence;
    private long _nextSweep;
    private long _spawnedInPlace;

    private JobContainment(ILogger logger, Hierarchy tracker, Dictionary<string, Hierarchy> resources, string description)
    {
        _logger = logger;
        _tracker = tracker;
        _resources = resources;
        Description = description;
    }

    /// <summary>Gets what is in force, for the log and tests.</summary>
    public string Description { get; }

    /// <summary>Whether a limit of <paramref name="resource"/> (<c>memory</c>, <c>pids</c>, <c>cpu</c>) can be enforced.</summary>
    public bool CanLimit(string resource) => _resources.ContainsKey(resource);

    /// <summary>Gets the hierarchy that tracks (and kills) every process of a job.</summary>
    internal Hierarchy Tracker => _tracker;

    /// <summary>Gets the directories of this instance's cgroups in the hierarchies that enforce limits.</summary>
    internal IEnumerable<string> LimitRoots => _resources.Values.Select(h => h.Root).Distinct();

    /// <summary>
    /// Sets containment up as configured and logs which mode is in force and why; <see langword="null"/> when jobs are not put in
    /// cgroups. The dispatcher's recovery then calls <see cref="KillLeftoversOfPreviousRun"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">A cgroup version was required and is not available.</exception>
    public static JobContainment? Create(DispatcherOptions options, ILogger logger)
    {
        var containment = options.Containment;
        if (containment.Mode == ContainmentMode.Off)
        {
            Log.Off(logger, "Dispatcher:Containment:Mode is Off");
            return null;
        }

        var layout = CgroupLayout.Detect(containment.CgroupParent);
        var v2Problem = containment.Mode is ContainmentMode.CgroupV1 ? "not asked for" : layout.WhyUnavailable(ContainmentMode.CgroupV2);
        var v1Problem = v2Problem is null ? "not needed" : layout.WhyUnavailable(ContainmentMode.CgroupV1);
        if (containment.Mode == ContainmentMode.CgroupV2 && v2Problem is not null)
        {
            throw new InvalidOperationException($"Dispatcher:Containment:Mode is CgroupV2, but {v2Problem}.");
        }

        if (containment.Mode == ContainmentMode.CgroupV1 && v1Problem is not null)
        {
            throw new InvalidOperationException($"Dispatcher:Containment:Mode is CgroupV1, but {v1Problem}.");
        }

        if (v2Problem is not null && v1Problem is not null)
        {
            Log.Off(logger, $"no cgroup can be created here ({v2Problem}; {v1Problem})");
            return null;
        }

        var instance = options.DataDirectory is { } data
            ? "dispatcher." + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(data))))[..16].ToLowerInvariant()
            : string.Create(CultureInfo.InvariantCulture, $"dispatcher.{Environment.ProcessId}.{Interlocked.Increment(ref s_instances)}");
        var tracker = v2Problem is null
            ? new Hierarchy("cgroup v2", Path.Combine(layout.Unified!, instance), V2: true)
            : new Hierarchy("cgroup v1 freezer", Path.Combine(layout.V1["freezer"], instance), V2: false);
        Directory.CreateDirectory(tracker.Root);
        var own = tracker.V2 ? null : CgroupLayout.Detect();
        if (!tracker.V2)
        {
            tracker = WithThreadPlacement(tracker, "freezer", own!);
        }

        var resources = new Dictionary<string, Hierarchy>(StringComparer.Ordinal);
        foreach (var resource in new[] { "memory", "pids", "cpu" })
        {
            if (tracker.V2 && TryEnableController(layout.Unified!, tracker.Root, resource))
            {
                resources[resource] = tracker;
            }
            else if (layout.V1.TryGetValue(resource, out var v1Base))
            {
                var hierarchy = new Hierarchy($"cgroup v1 {resource}", Path.Combine(v1Base, instance), V2: false);
                try
                {
                    Directory.CreateDirectory(hierarchy.Root);
                    resources[resource] = own is null ? hierarchy : WithThreadPlacement(hierarchy, resource, own);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    Log.ResourceUnavailable(logger, resource, ex.Message);
                }
            }
        }

        var limits = resources.Count == 0
            ? "none can be enforced"
            : string.Join(", ", resources.Select(r => $"{r.Key} by {r.Value.Name}"));
        var description = $"{tracker.Name} in {tracker.Root} (kill: {(tracker.V2 ? "cgroup.kill" : "freeze, SIGKILL every process, thaw")}); limits: {limits}"
            + (tracker.HomeTasks is not null ? "; commands are spawned in their cgroups" : "; commands start through a stub that is placed first");
        var result = new JobContainment(logger, tracker, resources, description);
        Log.On(logger, description, v2Problem is null ? "cgroup v2 is writable" : $"cgroup v2 is not usable: {v2Problem}");
        return result;
    }

    /// <summary>Creates a job's cgroups with its limits; <paramref name="graceful"/> and <paramref name="forceful"/> then signal every process in them.</summary>
    /// <exception cref="IOException">A cgroup could not be created or limited.</exception>
    public JobCgroup Start(string jobId, JobLimits? limits, CancellationToken graceful, CancellationToken forceful)
    {
        SweepKept();
        var dirs = new List<(Hierarchy Hierarchy, string Dir)>();
        var name = string.Create(CultureInfo.InvariantCulture, $"job.{Interlocked.Increment(ref _sequence)}.{Sanitize(jobId)}");
        var hierarchies = new List<Hierarchy> { _tracker };
        if (limits is not null)
        {
            foreach (var (resource, set) in new[] { ("memory", limits.MemoryBytes is not null), ("pids", limits.MaxProcesses is not null), ("cpu", limits.CpuWeight is not null) })
            {
                if (!set)
                {
                    continue;
                }

                if (_resources.TryGetValue(resource, out var hierarchy))
                {
                    if (!hierarchies.Contains(hierarchy))
                    {
                        hierarchies.Add(hierarchy);
                    }
                }
                else
                {
                    Log.LimitNotEnforced(_logger, jobId, resource);
                }
            }
        }

        // A thread in the job's v1 pids cgroup would count against the job's process limit while it spawns.
        var placeSpawningThread = !(limits?.MaxProcesses is not null && _resources.TryGetValue("pids", out var pids) && !pids.V2);
        var cgroup = new JobCgroup(jobId, dirs, placeSpawningThread);
        try
        {
            foreach (var hierarchy in hierarchies)
            {
                var dir = Path.Combine(hierarchy.Root, name);
                Directory.CreateDirectory(dir);
                dirs.Add((hierarchy, dir));
            }

            if (limits is not null)
            {
                cgroup.ApplyLimits(limits, _resources);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            cgroup.Remove();
            throw new IOException($"Cannot create the cgroups of job '{jobId}': {ex.Message}", ex);
        }

        cgroup.Watch(graceful, forceful);
        if (cgroup.PlacesSpawningThread)
        {
            Interlocked.Increment(ref _spawnedInPlace);
        }

        return cgroup;
    }

    /// <summary>Gets how many jobs had their commands spawned straight into their cgroups, without the stub (for tests).</summary>
    internal long JobsSpawnedInPlace => Interlocked.Read(ref _spawnedInPlace);

    /// <summary>
    /// The hierarchy with <see cref="Hierarchy.HomeTasks"/> set if a thread of this process can move itself into the instance's
    /// cgroup and back into its own (probed by doing it: own, instance, own); unchanged otherwise (commands then use the stub).
    /// </summary>
    private static Hierarchy WithThreadPlacement(Hierarchy hierarchy, string controller, CgroupLayout own)
    {
        if (own.V1.GetValueOrDefault(controller) is not { } home)
        {
            return hierarchy;
        }

        var homeTasks = Path.Combine(home, "tasks");
        try
        {
            // Home first: a refusal there leaves the thread where it was.
            CgroupFile.WriteZero(homeTasks);
            CgroupFile.WriteZero(Path.Combine(hierarchy.Root, "tasks"));
            CgroupFile.WriteZero(homeTasks);
            return hierarchy with { HomeTasks = homeTasks };
        }
        catch (IOException)
        {
            return hierarchy;
        }
    }

    /// <summary>Handles the processes a job left: killed (and its cgroups removed once empty) or kept (its cgroups removed once they end).</summary>
    public void End(JobCgroup cgroup, LeftoverProcesses leftovers)
    {
        cgroup.StopWatching();
        if (cgroup.Processes().Count == 0)
        {
            if (!cgroup.Remove())
            {
                _kept.TryAdd(cgroup, 0);
            }

            return;
        }

        // A job stopped forcefully is being killed whole already (what is left is on its way out): wait for that, keep nothing.
        if (leftovers == LeftoverProcesses.Kill || cgroup.Killing is not null)
        {
            if (cgroup.Killing is null)
            {
                Log.LeftoversKilled(_logger, cgroup.JobId);
            }

            // Off the caller's thread (the child event loop): killing waits for the processes to go.
            var killing = Task.Run(async () =>
            {
                if (cgroup.Killing is { } started)
                {
                    await started.ConfigureAwait(false);
                }

                await cgroup.KillAsync().ConfigureAwait(false);
                if (!cgroup.Remove())
                {
                    _kept.TryAdd(cgroup, 0);
                }
            });
            _killing.TryAdd(killing, 0);
            _ = killing.ContinueWith(static (t, killing) => ((ConcurrentDictionary<Task, byte>)killing!).TryRemove(t, out _), _killing,
                CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return;
        }

        cgroup.MarkKept();
        _kept.TryAdd(cgroup, 0);
    }

    /// <summary>
    /// Waits (a bounded while: a kill gives up after about a second) for leftovers being killed, then removes this instance's
    /// cgroups that are empty (kept processes still running keep theirs).
    /// </summary>
    public void Dispose()
    {
        try
        {
            _ = Task.WaitAll([.. _killing.Keys], s_killWait);
        }
        catch (AggregateException)
        {
            // A failed kill leaves its cgroup in _kept, handled below.
        }

        foreach (var cgroup in _kept.Keys)
        {
            if (cgroup.Processes().Count == 0 && cgroup.Remove())
            {
                _kept.TryRemove(cgroup, out _);
            }
        }

        foreach (var hierarchy in _resources.Values.Append(_tracker).Distinct())
        {
            JobCgroup.TryRemoveDirectory(hierarchy.Root);
        }
    }

    /// <summary>
    /// Kills what is left in the cgroups of jobs that were running when the previous host of this data directory died (with a
    /// data directory the instance cgroup's name is stable; without one there is no previous run to clean up after).
    /// </summary>
    internal int KillLeftoversOfPreviousRun()
    {
        var found = 0;
        foreach (var dir in Directory.EnumerateDirectories(_tracker.Root, "job.*"))
        {
            var name = Path.GetFileName(dir);
            var cgroup = new JobCgroup(name, [.. new[] { _tracker }.Concat(_resources.Values).Distinct()
                .Select(h => (h, Path.Combine(h.Root, name))).Where(d => Directory.Exists(d.Item2))]);
            var count = cgroup.Processes().Count;
            if (count > 0)
            {
                found += count;
                cgroup.KillAsync().GetAwaiter().GetResult();
            }

            if (!cgroup.Remove())
            {
                _kept.TryAdd(cgroup, 0);
            }
        }

        foreach (var hierarchy in _resources.Values.Where(h => h != _tracker).Distinct())
        {
            // Limit cgroups left without a tracking cgroup (the host died between creating them): empty, remove.
            foreach (var dir in Directory.EnumerateDirectories(hierarchy.Root, "job.*").Where(d => !Directory.Exists(Path.Combine(_tracker.Root, Path.GetFileName(d)))))
            {
                JobCgroup.TryRemoveDirectory(dir);
            }
        }

        if (found > 0)
        {
            Log.LeftoversOfPreviousRunKilled(_logger, found);
        }

        return found;
    }

    /// <summary>Removes the cgroups of kept processes that have ended; at most once a second.</summary>
    private void SweepKept()
    {
        var now = Environment.TickCount64;
        var next = Interlocked.Read(ref _nextSweep);
        if (_kept.IsEmpty || now < next || Interlocked.CompareExchange(ref _nextSweep, now + SweepIntervalMilliseconds, next) != next)
        {
            return;
        }

        foreach (var cgroup in _kept.Keys)
        {
            if (cgroup.Processes().Count == 0 && cgroup.Remove())
            {
                _kept.TryRemove(cgroup, out _);
            }
        }
    }

    private static bool TryEnableController(string parent, string instance, string controller)
    {
        try
        {
            if (!File.ReadAllText(Path.Combine(parent, "cgroup.subtree_control")).Split(' ', '\n').Contains(controller))
            {
                // Refused when the parent holds processes (the "no internal processes" rule) unless it is the root: then the
                // controller stays off and the v1 hierarchy (if any) is used.
                CgroupFile.Write(Path.Combine(parent, "cgroup.subtree_control"), "+" + controller);
            }

            CgroupFile.Write(Path.Combine(instance, "cgroup.subtree_control"), "+" + controller);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>A job id as part of a cgroup name: letters, digits, '-' and '_' kept, the rest '_', at most 64 characters.</summary>
    private static string Sanitize(string jobId)
    {
        var length = Math.Min(jobId.Length, 64);
        return string.Create(length, jobId, static (span, id) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                var c = id[i];
                span[i] = char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_';
            }
        });
    }

    /// <summary>One cgroup hierarchy as this instance uses it: its name for the log and the directory of the instance's cgroup.</summary>
    internal sealed record Hierarchy(string Name, string Root, bool V2)
    {
        /// <summary>
        /// Gets the <c>tasks</c> file of this process's own cgroup in this (cgroup v1) hierarchy when a thread of this process can
        /// move itself into this instance's cgroup and back (probed at start), so that commands can be spawned in place
        /// (<see cref="JobCgroup.PlacesSpawningThread"/>); otherwise <see langword="null"/>.
        /// </summary>
        public string? HomeTasks { get; init; }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 501, EventName = "ContainmentOn", Level = LogLevel.Information, Message = "Containment: each job runs in cgroups of its own: {Description} ({Why})")]
        public static partial void On(ILogger logger, string description, string why);

        [LoggerMessage(EventId = 502, EventName = "ContainmentOff", Level = LogLevel.Warning, Message = "Containment off: {Why}; a job's processes are found through their session and parent process ids, and a process that leaves both survives a kill")]
        public static partial void Off(ILogger logger, string why);

        [LoggerMessage(EventId = 503, EventName = "LimitNotEnforced", Level = LogLevel.Warning, Message = "Job {JobId}: its {Resource} limit is not enforced: no {Resource} cgroup hierarchy can be used here")]
        public static partial void LimitNotEnforced(ILogger logger, string jobId, string resource);

        [LoggerMessage(EventId = 504, EventName = "ResourceUnavailable", Level = LogLevel.Warning, Message = "Containment: the {Resource} hierarchy cannot be used: {Reason}")]
        public static partial void ResourceUnavailable(ILogger logger, string resource, string reason);

        [LoggerMessage(EventId = 505, EventName = "LeftoversKilled", Level = LogLevel.Information, Message = "Job {JobId} ended with processes still running; its queue kills them")]
        public static partial void LeftoversKilled(ILogger logger, string jobId);

        [LoggerMessage(EventId = 506, EventName = "LeftoversOfPreviousRunKilled", Level = LogLevel.Warning, Message = "Killed {Count} process(es) left in the cgroups of jobs that were running when the previous host died")]
        public static partial void LeftoversOfPreviousRunKilled(ILogger logger, int count);
    }
}
