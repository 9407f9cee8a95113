namespace Dispatcher.Scheduling;

/// <summary>
/// The scheduling state machine: queues with limits, pause and drain; ready jobs ordered by priority then submission; jobs waiting
/// for the jobs they depend on; jobs waiting for their start time. It is synchronous and does no I/O: every call changes the state
/// and returns the work that follows (jobs to start, jobs to finish as skipped, queues that drained), which the dispatcher carries
/// out. Not thread-safe: the dispatcher calls it under its lock.
/// </summary>
/// <remarks>
/// Costs, with n jobs held: submit, start, complete, remove and a due timer are O(log n) (sorted sets keyed by
/// (priority desc, sequence) and (start time, sequence)); a job is found by id in O(1). A job's dependents are kept on the job
/// itself, so finishing a job costs O(dependents · log n).
/// </remarks>
/// <typeparam name="TJob">The dispatcher's job type.</typeparam>
internal sealed class JobScheduler<TJob>
    where TJob : ScheduledJob
{
    private readonly TimeProvider _time;
    private readonly Dictionary<string, SchedulerQueue> _queues = new(StringComparer.Ordinal);
    private readonly List<SchedulerQueue> _queueOrder = [];
    private readonly Dictionary<string, TJob> _jobs = new(StringComparer.Ordinal);
    private readonly SortedSet<ScheduledJob> _timers = new(ByStartTime.Instance);
    private long _sequence;
    private bool _halted;

    public JobScheduler(TimeProvider time)
    {
        _time = time;
    }

    /// <summary>Gets the queue names, in the order they were added.</summary>
    public IEnumerable<string> QueueNames => _queueOrder.Select(q => q.Name);

    /// <summary>Gets how many jobs the scheduler holds (waiting, ready and running).</summary>
    public int Count => _jobs.Count;

    /// <summary>Gets every job the scheduler holds, in no particular order.</summary>
    public IEnumerable<TJob> Jobs => _jobs.Values;

    /// <summary>Gets when the earliest delayed job is due, or <see langword="null"/> when none waits for a time.</summary>
    public DateTimeOffset? NextDue => _timers.Count == 0 ? null : _timers.Min!.NotBefore;

    /// <summary>Gets whether the scheduler has stopped starting jobs (see <see cref="Halt"/>).</summary>
    public bool IsHalted => _halted;

    public bool TryGetJob(string id, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out TJob job) => _jobs.TryGetValue(id, out job);

    public bool Contains(string id) => _jobs.ContainsKey(id);

    public bool HasQueue(string name) => _queues.ContainsKey(name);

    /// <summary>Adds a queue; false if one with that name exists (nothing changes).</summary>
    public bool AddQueue(string name, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        if (_queues.ContainsKey(name))
        {
            return false;
        }

        var queue = new SchedulerQueue(name, limit);
        _queues.Add(name, queue);
        _queueOrder.Add(queue);
        return true;
    }

    public QueueInfo? GetQueue(string name) => _queues.TryGetValue(name, out var q) ? q.Snapshot() : null;

    public IReadOnlyList<QueueInfo> GetQueues() => [.. _queueOrder.Select(q => q.Snapshot())];

    /// <summary>Changes a queue's limit; a higher one starts waiting jobs at once.</summary>
    public SchedulerWork<TJob> SetLimit(string name, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        var queue = Queue(name);
        queue.Limit = limit;
        var work = new SchedulerWork<TJob>();
        StartRunnable(queue, work);
        return work;
    }

    /// <summary>Pauses a queue: its running jobs go on, its other jobs do not start until <see cref="Resume"/>.</summary>
    public void Pause(string name) => Queue(name).Paused = true;

    /// <summary>Ends a pause and a drain, and starts what the queue has room for.</summary>
    public SchedulerWork<TJob> Resume(string name)
    {
        var queue = Queue(name);
        queue.Paused = false;
        queue.Draining = false;
        var work = new SchedulerWork<TJob>();
        StartRunnable(queue, work);
        return work;
    }

    /// <summary>
    /// Drains a queue: it refuses new jobs (<see cref="SubmitStatus.Draining"/>) and runs the ones it holds; the work reports the
    /// queue in <see cref="SchedulerWork{TJob}.Drained"/> when it holds none (now, or when its last job leaves).
    /// </summary>
    public SchedulerWork<TJob> Drain(string name)
    {
        var queue = Queue(name);
        queue.Draining = true;
        var work = new SchedulerWork<TJob>();
        CheckDrained(queue, work);
        return work;
    }

    /// <summary>Sets a queue's pause and drain state as recovered from the journal, without starting anything.</summary>
    public void Restore(string name, int limit, bool paused, bool draining)
    {
        if (!_queues.TryGetValue(name, out var queue))
        {
            AddQueue(name, limit);
            queue = _queues[name];
        }

        queue.Limit = limit;
        queue.Paused = paused;
        queue.Draining = draining;
    }

    /// <summary>Starts whatever every queue has room for (after a recovery that submitted jobs while halted, for instance).</summary>
    public SchedulerWork<TJob> StartAll()
    {
        var work = new SchedulerWork<TJob>();
        foreach (var queue in _queueOrder)
        {
            StartRunnable(queue, work);
        }

        return work;
    }

    /// <summary>
    /// Takes a job. It waits for <paramref name="dependencies"/> (ids of jobs the scheduler holds), then for its
    /// <see cref="ScheduledJob.NotBefore"/>, then for room in its queue. A <paramref name="held"/> job also waits for
    /// <see cref="Release"/> (the dispatcher holds a job until its journal record is durable).
    /// </summary>
    /// <returns>Whether the job was taken; if not, nothing changed.</returns>
    public SubmitStatus TrySubmit(TJob job, IReadOnlyCollection<string>? dependencies, out SchedulerWork<TJob> work, bool held = false)
    {
        work = null!;
        if (!_queues.TryGetValue(job.Queue, out var queue))
        {
            return SubmitStatus.UnknownQueue;
        }

        if (queue.Draining)
        {
            return SubmitStatus.Draining;
        }

        if (_jobs.ContainsKey(job.Id))
        {
            return SubmitStatus.DuplicateId;
        }

        var unmet = 0;
        if (dependencies is { Count: > 0 })
        {
            foreach (var id in dependencies)
            {
                if (!_jobs.ContainsKey(id))
                {
                    return SubmitStatus.UnknownDependency;
                }
            }

            foreach (var id in dependencies.Distinct(StringComparer.Ordinal))
            {
                var dependency = _jobs[id];
                (dependency.Dependents ??= []).Add(job);
                unmet++;
            }
        }

        job.Sequence = ++_sequence;
        job.QueueState = queue;
        job.UnmetDependencies = unmet + (held ? 1 : 0);
        if (held)
        {
            job.Held = true;
            queue.Held.Add(job);
        }

        _jobs.Add(job.Id, job);
        work = new SchedulerWork<TJob>();
        Place(job, work);
        return SubmitStatus.Accepted;
    }

    /// <summary>Lets a job taken with <c>held</c> go on (to its dependencies, its start time, its queue).</summary>
    public SchedulerWork<TJob> Release(TJob job)
    {
        var work = new SchedulerWork<TJob>();
        if (!job.Held || !ReferenceEquals(_jobs.GetValueOrDefault(job.Id), job))
        {
            return work;
        }

        // Records become durable together, but their continuations run in any order: a queue starts a job only when no
        // earlier job of it is still held, so a later job released first waits (first in, first out among equal priorities).
        Unhold(job);
        if (job.ScheduleState == ScheduleState.WaitingForDependencies && --job.UnmetDependencies == 0)
        {
            job.QueueState.Waiting.Remove(job);
            Place(job, work);
        }

        StartRunnable(job.QueueState, work);
        return work;
    }

    /// <summary>A running job ended for good. Its dependents go on (it succeeded) or are skipped (it did not); its queue starts the next job.</summary>
    public SchedulerWork<TJob> Complete(TJob job, bool succeeded)
    {
        if (job.ScheduleState != ScheduleState.Running || !ReferenceEquals(_jobs.GetValueOrDefault(job.Id), job))
        {
            throw new InvalidOperationException($"Job '{job.Id}' is not running in the scheduler.");
        }

        var queue = job.QueueState;
        queue.Running.Remove(job);
        _jobs.Remove(job.Id);
        job.ScheduleState = ScheduleState.None;
        var work = new SchedulerWork<TJob>();
        Resolve(job, succeeded, work);
        StartRunnable(queue, work);
        CheckDrained(queue, work);
        return work;
    }

    /// <summary>A running job ended and runs again at <paramref name="notBefore"/> (a retry); it keeps its place among equal priorities.</summary>
    public SchedulerWork<TJob> Retry(TJob job, DateTimeOffset notBefore)
    {
        if (job.ScheduleState != ScheduleState.Running)
        {
            throw new InvalidOperationException($"Job '{job.Id}' is not running in the scheduler.");
        }

        var queue = job.QueueState;
        queue.Running.Remove(job);
        job.NotBefore = notBefore;
        var work = new SchedulerWork<TJob>();
        Place(job, work);
        StartRunnable(queue, work);
        return work;
    }

    /// <summary>Removes a job that has not started (it was killed); the jobs that depend on it are skipped.</summary>
    public SchedulerWork<TJob> Remove(TJob job)
    {
        var queue = job.QueueState;
        switch (job.ScheduleState)
        {
            case ScheduleState.Ready:
                queue.Ready.Remove(job);
                break;
            case ScheduleState.Delayed:
                _timers.Remove(job);
                queue.Waiting.Remove(job);
                break;
            case ScheduleState.WaitingForDependencies:
                queue.Waiting.Remove(job);
                break;
            default:
                throw new InvalidOperationException($"Job '{job.Id}' is not pending in the scheduler.");
        }

        _jobs.Remove(job.Id);
        job.ScheduleState = ScheduleState.None;
        var work = new SchedulerWork<TJob>();
        if (job.Held)
        {
            Unhold(job);
            StartRunnable(queue, work);
        }

        Resolve(job, succeeded: false, work);
        CheckDrained(queue, work);
        return work;
    }

    /// <summary>Moves the delayed jobs that are due to their queues and starts what has room.</summary>
    public SchedulerWork<TJob> Tick()
    {
        var now = _time.GetUtcNow();
        var work = new SchedulerWork<TJob>();
        while (_timers.Count > 0 && _timers.Min!.NotBefore <= now)
        {
            var job = _timers.Min!;
            _timers.Remove(job);
            job.QueueState.Waiting.Remove(job);
            MakeReady(job, work);
        }

        return work;
    }

    /// <summary>Stops starting jobs for good (the dispatcher is stopping); everything else goes on.</summary>
    public void Halt() => _halted = true;

    /// <summary>A queue's jobs in the order they run: running (oldest start first), ready (in start order), then waiting.</summary>
    public IEnumerable<TJob> JobsOf(string name)
    {
        var queue = Queue(name);
        foreach (var job in queue.Running)
        {
            yield return (TJob)job;
        }

        foreach (var job in queue.Ready)
        {
            yield return (TJob)job;
        }

        foreach (var job in queue.Waiting)
        {
            yield return (TJob)job;
        }
    }

    /// <summary>
    /// A job's position in <see cref="JobsOf"/>: O(log n + n / <see cref="JobSet.MaxChunk"/>).
    /// </summary>
    public static int PositionOf(TJob job)
    {
        var queue = job.QueueState;
        switch (job.ScheduleState)
        {
            case ScheduleState.Running:
                return queue.Running.IndexOf(job);
            case ScheduleState.Ready:
                return queue.Running.Count + IndexIn(queue.Ready, job);
            case ScheduleState.Delayed or ScheduleState.WaitingForDependencies:
                return queue.Running.Count + queue.Ready.Count + IndexIn(queue.Waiting, job);
            default:
                return -1;
        }
    }

    private static int IndexIn(JobSet set, ScheduledJob job) => set.IndexOf(job);

    private SchedulerQueue Queue(string name) =>
        _queues.TryGetValue(name, out var queue) ? queue : throw new KeyNotFoundException($"Unknown queue '{name}'.");

    /// <summary>Puts a job whose state is open into the set it belongs to, and starts it when it can.</summary>
    private void Place(ScheduledJob job, SchedulerWork<TJob> work)
    {
        var queue = job.QueueState;
        if (job.UnmetDependencies > 0)
        {
            job.ScheduleState = ScheduleState.WaitingForDependencies;
            queue.Waiting.Add(job);
        }
        else if (job.NotBefore is { } at && at > _time.GetUtcNow())
        {
            job.ScheduleState = ScheduleState.Delayed;
            queue.Waiting.Add(job);
            _timers.Add(job);
        }
        else
        {
            MakeReady(job, work);
        }
    }

    private static void Unhold(ScheduledJob job)
    {
        job.Held = false;
        job.QueueState.Held.Remove(job);
    }

    private void MakeReady(ScheduledJob job, SchedulerWork<TJob> work)
    {
        job.ScheduleState = ScheduleState.Ready;
        job.QueueState.Ready.Add(job);
        StartRunnable(job.QueueState, work);
    }

    private void StartRunnable(SchedulerQueue queue, SchedulerWork<TJob> work)
    {
        if (_halted || queue.Paused)
        {
            return;
        }

        while (queue.HasRoom && queue.Ready.Count > 0)
        {
            var job = queue.Ready.Min!;
            if (queue.Held.Count > 0 && JobSet.Compare(queue.Held.Min!, job) < 0)
            {
                break;
            }

            queue.Ready.Remove(job);
            job.ScheduleState = ScheduleState.Running;
            queue.Running.Add(job);
            work.AddStart((TJob)job);
        }
    }

    /// <summary>
    /// Tells a finished job's dependents: one fewer to wait for, or skipped. A skipped job's own dependents are skipped in turn,
    /// with an explicit stack (a chain of a hundred thousand dependent jobs must not overflow the thread's stack).
    /// </summary>
    private void Resolve(ScheduledJob finished, bool succeeded, SchedulerWork<TJob> work)
    {
        if (finished.Dependents is null)
        {
            return;
        }

        var stack = new Stack<(ScheduledJob Job, bool Succeeded)>();
        stack.Push((finished, succeeded));
        while (stack.TryPop(out var item))
        {
            if (item.Job.Dependents is not { } dependents)
            {
                continue;
            }

            item.Job.Dependents = null;
            foreach (var dependent in dependents)
            {
                if (dependent.ScheduleState != ScheduleState.WaitingForDependencies)
                {
                    // Killed (or skipped through another dependency) meanwhile.
                    continue;
                }

                var queue = dependent.QueueState;
                if (item.Succeeded)
                {
                    if (--dependent.UnmetDependencies == 0)
                    {
                        queue.Waiting.Remove(dependent);
                        Place(dependent, work);
                    }

                    continue;
                }

                queue.Waiting.Remove(dependent);
                _jobs.Remove(dependent.Id);
                dependent.ScheduleState = ScheduleState.None;
                if (dependent.Held)
                {
                    Unhold(dependent);
                    StartRunnable(queue, work);
                }

                work.AddSkip((TJob)dependent);
                CheckDrained(queue, work);
                stack.Push((dependent, false));
            }
        }
    }

    private static void CheckDrained(SchedulerQueue queue, SchedulerWork<TJob> work)
    {
        if (queue.Draining && queue.Running.Count == 0 && queue.Ready.Count == 0 && queue.Waiting.Count == 0)
        {
            work.AddDrained(queue.Name);
        }
    }

    /// <summary>Delayed jobs: earliest start first, then submission order.</summary>
    private sealed class ByStartTime : IComparer<ScheduledJob>
    {
        public static readonly ByStartTime Instance = new();

        public int Compare(ScheduledJob? x, ScheduledJob? y)
        {
            var c = Nullable.Compare(x!.NotBefore, y!.NotBefore);
            return c != 0 ? c : x.Sequence.CompareTo(y.Sequence);
        }
    }
}

/// <summary>One queue's state in the scheduler.</summary>
internal sealed class SchedulerQueue(string name, int limit)
{
    public string Name { get; } = name;

    public int Limit { get; set; } = limit;

    public bool Paused { get; set; }

    public bool Draining { get; set; }

    public JobSet Ready { get; } = new();

    public JobSet Waiting { get; } = new();

    /// <summary>Jobs whose records are not durable yet, in start order: a ready job after one of them waits.</summary>
    public JobSet Held { get; } = new();

    public List<ScheduledJob> Running { get; } = [];

    public bool HasRoom => Limit == 0 || Running.Count < Limit;

    public QueueInfo Snapshot() => new(Name, Limit, Paused, Draining, Running.Count, Ready.Count + Waiting.Count);
}

/// <summary>Why <see cref="JobScheduler{TJob}.TrySubmit"/> did not take a job.</summary>
internal enum SubmitStatus
{
    Accepted,
    UnknownQueue,
    Draining,
    DuplicateId,
    UnknownDependency,
}

/// <summary>What the dispatcher must do after a scheduler call.</summary>
/// <typeparam name="TJob">The dispatcher's job type.</typeparam>
internal sealed class SchedulerWork<TJob>
    where TJob : ScheduledJob
{
    // Made on first use: most calls start one job or none, and three lists per call were a third of the scheduler's allocations.
    private List<TJob>? _start;
    private List<TJob>? _skip;
    private List<string>? _drained;

    /// <summary>Gets the jobs to start, in order; the scheduler counts them as running.</summary>
    public IReadOnlyList<TJob> Start => (IReadOnlyList<TJob>?)_start ?? [];

    /// <summary>Gets the jobs to finish as skipped (a job they depend on did not succeed); the scheduler no longer holds them.</summary>
    public IReadOnlyList<TJob> Skip => (IReadOnlyList<TJob>?)_skip ?? [];

    /// <summary>Gets the draining queues that hold no job any more.</summary>
    public IReadOnlyList<string> Drained => (IReadOnlyList<string>?)_drained ?? [];

    public bool IsEmpty => _start is null && _skip is null && _drained is null;

    internal void AddStart(TJob job) => (_start ??= []).Add(job);

    internal void AddSkip(TJob job) => (_skip ??= []).Add(job);

    internal void AddDrained(string queue)
    {
        if (_drained?.Contains(queue) != true)
        {
            (_drained ??= []).Add(queue);
        }
    }
}
