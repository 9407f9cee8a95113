using System.Diagnostics;
using System.Diagnostics.Metrics;
using Dispatcher.Containment;
using Dispatcher.Events;
using Dispatcher.Running;
using Dispatcher.Scheduling;
using Dispatcher.Storage;
using Dispatcher.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Internal;

/// <summary>A job store plugged in with <c>UseJobStore&lt;T&gt;()</c>; the container owns (and disposes) it.</summary>
internal sealed class JobStoreRegistration(IJobStore store)
{
    public IJobStore Store { get; } = store;
}

/// <summary>
/// The dispatcher: execution, stop enforcement, retention, journal and recovery around the scheduling state machine
/// (<see cref="JobScheduler{TJob}"/>), which decides what starts when. One lock guards the scheduler and the retained results;
/// nothing polls: a job starts inside the call that made room for it (an enqueue, the end of another job, a queue change), or when
/// the one timer for the earliest delayed job fires.
/// </summary>
internal sealed partial class DefaultDispatcher : IDispatcher, IAsyncDisposable
{
    private const int MaxInlineLaunchDepth = 4;

    [ThreadStatic]
    private static int t_inlineLaunchDepth;

    private readonly object _gate = new();
    private readonly DispatcherOptions _options;
    private readonly IJobRunner _runner;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly DispatcherMetrics _metrics;
    private readonly EventHub _events;
    private readonly JobScheduler<Job> _scheduler;
    private readonly ITimer _wakeTimer;
    private readonly HashSet<string> _changedQueues = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _idempotencyKeys = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTimeOffset> _lastStarted = new(StringComparer.Ordinal);
    private readonly Dictionary<string, JobResult> _finished = new(StringComparer.Ordinal);
    private readonly Queue<JobResult> _finishedOrder = new();
    private readonly IJobStore? _store;
    private readonly JobLogs? _logs;
    private readonly bool _ownsStore;
    private Task? _startTask;
    private Task _lastWrite = Task.CompletedTask;
    private JobContainment? _containment;
    private int _repairNeeded;
    private int _repairInFlight;
    private DateTimeOffset? _armedFor;
    private long _journalRecords;
    private bool _stopping;
    private Task? _stopTask;

    public DefaultDispatcher(IOptions<DispatcherOptions> options, IJobRunner runner, TimeProvider timeProvider,
        ILogger<DefaultDispatcher>? logger = null, IMeterFactory? meterFactory = null, JobStoreRegistration? customStore = null)
    {
        _options = options.Value;
        _runner = runner;
        _time = timeProvider;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _metrics = new DispatcherMetrics(meterFactory);
        _events = new EventHub(_options.EventBufferCapacity);
        _scheduler = new JobScheduler<Job>(timeProvider);
        foreach (var (name, q) in _options.Queues)
        {
            _scheduler.AddQueue(name, q.MaxConcurrency);
        }

        _wakeTimer = timeProvider.CreateTimer(static state => ((DefaultDispatcher)state!).OnWake(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _logs = _options.DataDirectory is { } logDirectory ? new JobLogs(logDirectory, Math.Max(_options.MaxLogBytes, 65536)) : null;

        // No I/O here: the journal is read when the host starts (StartAsync), or at the first enqueue without a host.
        var store = customStore?.Store;
        _ownsStore = store is null;
        _store = store ?? (_options.DataDirectory is { } directory
            ? new FileJobStore(directory, _options.FlushToDisk, _logger, _metrics, _options.MaxOutputCharacters)
            : null);
        if (_store is FileJobStore file)
        {
            file.CompactionWanted = OnCompactionWanted;
            file.WriteFailed = () => Volatile.Write(ref _repairNeeded, 1);
        }
    }

    /// <summary>The journal's writer passed the compaction threshold after the last append checked it.</summary>
    private void OnCompactionWanted()
    {
        lock (_gate)
        {
            if (_startTask is { IsCompletedSuccessfully: true } && _stopTask is not { IsCompleted: true }
                && _store is FileJobStore { WantsCompaction: true, Health.Status: not JobStoreStatus.Failed })
            {
                Compact();
            }
        }
    }

    /// <summary>Gets the job store: the one plugged in with <c>UseJobStore</c>, the file journal, or <see langword="null"/> in memory.</summary>
    internal IJobStore? Store => _store;

    /// <summary>
    /// Replays the job store (once): queue states, recurrences and retained results come back, processes that a crash left behind
    /// are ended, pending jobs start. The hosted service calls it when the host starts; an enqueue or a queue change before that waits for it.
    /// </summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            // Containment first (it kills what a crash left in the cgroups of running jobs), then the journal.
            _startTask ??= Task.Run(() =>
            {
                _containment = JobContainment.Create(_options, _logger);
                return _store is null ? LogInMemory() : RecoverAsync(_store, cancellationToken);
            }, CancellationToken.None);
        }

        return _startTask.WaitAsync(cancellationToken);
    }

    private Task LogInMemory()
    {
        DispatcherLog.InMemory(_logger);
        return Task.CompletedTask;
    }

    /// <summary>Waits for the replay of the job store, when it has not finished yet.</summary>
    private async ValueTask EnsureStartedAsync(CancellationToken cancellationToken)
    {
        if (_startTask is not { IsCompletedSuccessfully: true })
        {
            await StartAsync(CancellationToken.None).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public IReadOnlyCollection<string> Queues
    {
        get
        {
            lock (_gate)
            {
                return [.. _scheduler.QueueNames];
            }
        }
    }

    /// <summary>The configured options of a queue; <see langword="null"/> for one added at run time (no limits, run-as or leftover policy).</summary>
    private QueueOptions? QueueOptionsOf(string queue) => _options.Queues.TryGetValue(queue, out var options) ? options : null;

    /// <summary>Gets the containment in force, or <see langword="null"/> without.</summary>
    internal JobContainment? Containment => _containment;

    public async ValueTask<JobInfo> EnqueueAsync(JobRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        if (request.GeneratesId && string.IsNullOrEmpty(request.Id))
        {
            request = request with { Id = Guid.NewGuid().ToString("N") };
        }

        Validate(request);
        try
        {
            _ = RunAsUser.ForJob(request, QueueOptionsOf(request.Queue), _options);
        }
        catch (InvalidOperationException ex)
        {
            throw Reject(request.Id, JobRejectionReason.InvalidRequest, ex.Message);
        }

        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        var toStart = new List<Job>();
        JobInfo info;
        Task? durable;
        Job? job;
        using var enqueueSpan = DispatcherTracing.StartEnqueue(request.Id, request.Queue);
        lock (_gate)
        {
            if (Idempotent(request) is { } existing)
            {
                return existing;
            }

            info = EnqueueCore(request, toStart, out durable, out job);
        }

        Launch(toStart);
        if (durable is not null && job is not null)
        {
            // The caller hears "accepted" only once the job would survive a crash (group commit: one flush for many enqueues).
            // Awaited here rather than in an async method of its own: one state machine and one completion fewer per enqueue.
            await durable.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            toStart.Clear();
            MadeDurable(job, durable, toStart);
        }

        return info;
    }

    /// <summary>Accepts a validated job: the scheduler takes it (or it is skipped at once), the journal gets its record. Under the lock.</summary>
    private JobInfo EnqueueCore(JobRequest request, List<Job> toStart, out Task? durable, out Job? held)
    {
        durable = null;
        held = null;
        if (_stopping)
        {
            throw Reject(request.Id, JobRejectionReason.ShuttingDown, "The dispatcher is stopping and accepts no new jobs.");
        }

        if (_store?.Health is { Status: JobStoreStatus.Failed } failedStore)
        {
            // Fail at once rather than queue behind a writer that will never write.
            throw Reject(request.Id, JobRejectionReason.StorageFailed, $"Job '{request.Id}' was not accepted: {failedStore.Description}");
        }

        if (!_scheduler.HasQueue(request.Queue))
        {
            throw Reject(request.Id, JobRejectionReason.UnknownQueue,
                $"Unknown queue '{request.Queue}'; the queues are {string.Join(", ", _scheduler.QueueNames.Select(q => $"'{q}'"))}.");
        }

        var now = _time.GetUtcNow();
        var (waitFor, failedDependency) = ResolveDependencies(request);
        var job = new Job(request, request.Timeout ?? _options.DefaultJobTimeout, now)
        {
            NotBefore = request.StartAt ?? (request.Delay is { } delay ? now + delay : null),
        };

        SchedulerWork<Job>? work = null;
        if (failedDependency is null)
        {
            // With a store the job is held until its record is durable: a job that ran and then vanished in a crash would be
            // worse than one refused.
            var status = _scheduler.TrySubmit(job, waitFor, out work, held: _store is not null);
            if (status != SubmitStatus.Accepted)
            {
                throw status switch
                {
                    SubmitStatus.Draining => Reject(request.Id, JobRejectionReason.QueueDraining,
                        $"Queue '{request.Queue}' is draining and accepts no new jobs; resume it first."),
                    SubmitStatus.DuplicateId => Reject(request.Id, JobRejectionReason.DuplicateId, $"A job with id '{request.Id}' is already pending or running."),
                    _ => Reject(request.Id, JobRejectionReason.InvalidRequest, $"Job '{request.Id}' could not be scheduled ({status})."),
                };
            }
        }

        job.Activity = DispatcherTracing.StartJob(job.Id, job.Queue, Activity.Current?.Context ?? default);
        if (_store is not null)
        {
            // Appended under the lock, so the journal holds jobs in submission order.
            durable = _store.AppendAsync(new JobEnqueuedRecord(job.Request, job.EnqueuedAt));
            _lastWrite = durable;
            _journalRecords++;
            held = failedDependency is null ? job : null;
        }

        _metrics.Enqueued(job.Queue);
        DispatcherLog.JobEnqueued(_logger, job.Id, job.Queue, job.Commands.Count);
        if (request.IdempotencyKey is { } key)
        {
            _idempotencyKeys[key] = job.Id;
        }

        if (failedDependency is not null)
        {
            // A job it depends on has already failed: it finishes as skipped, and never runs.
            var skipped = Snapshot(job, null);
            DispatcherLog.JobSkipped(_logger, job.Id, failedDependency);
            _metrics.LeftQueueUnstarted(job.Queue);
            Finish(job, JobOutcome.Skipped, []);
            return skipped;
        }

        if (_events.HasSubscribers)
        {
            // Announced as pending first, even when the scheduler starts it at once (the event order clients rely on).
            _events.Publish(new JobPendingEvent(Snapshot(job, Position(job)), job.EnqueuedAt));
        }

        Apply(work!, toStart);
        return Snapshot(job, Position(job));
    }

    /// <summary>Waits for a job's record; then lets it start, or takes it back out of the scheduler and rejects it (a recurrence's job).</summary>
    private async Task MadeDurableAsync(Job job, Task durable)
    {
        await durable.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        MadeDurable(job, durable, []);
    }

    /// <summary>
    /// After a job's record was made durable (or failed to be: any store failure rejects the job, and the store has logged it):
    /// lets the job start, or takes it back out of the scheduler and rejects it. <paramref name="toStart"/> is an empty list to use.
    /// </summary>
    private void MadeDurable(Job job, Task durable, List<Job> toStart)
    {
        // What awaiting it would have thrown (the store's own exception), and observed.
        var failure = durable.IsCompletedSuccessfully ? null : durable.Exception?.InnerException ?? new TaskCanceledException(durable);
        lock (_gate)
        {
            if (failure is not null && job.State == JobState.Pending && _scheduler.TryGetJob(job.Id, out var held) && ReferenceEquals(held, job))
            {
                var work = _scheduler.Remove(job);
                job.State = JobState.Finished;
                _metrics.LeftQueueUnstarted(job.Queue);
                job.CompletionIfAny?.TrySetException(new JobRejectedException(job.Id, JobRejectionReason.StorageFailed, "The job was not recorded."));
                job.Activity?.SetStatus(ActivityStatusCode.Error, "not recorded");
                job.Activity?.Stop();
                _ = job.CompletionIfAny?.Task.Exception;
                Apply(work, toStart);
            }
            else if (failure is null)
            {
                Apply(_scheduler.Release(job), toStart);
            }
        }

        Launch(toStart);
        if (failure is not null)
        {
            DispatcherLog.JobNotDurable(_logger, job.Id, failure);
            _metrics.Rejected();
            throw new JobRejectedException(job.Id, JobRejectionReason.StorageFailed,
                $"Job '{job.Id}' was not accepted and did not run: {failure.Message}");
        }
    }

    /// <summary>
    /// Each queue's load and when it last started a job, for the stalled-queue health check. Waiting counts jobs that could
    /// start now: ready ones, and ones held only until their record is durable (not delayed ones, nor ones after other jobs).
    /// </summary>
    internal IReadOnlyList<QueueActivity> QueueActivity()
    {
        lock (_gate)
        {
            var list = new List<QueueActivity>();
            foreach (var queue in _scheduler.GetQueues())
            {
                var waiting = 0;
                DateTimeOffset? oldest = null;
                foreach (var job in _scheduler.JobsOf(queue.Name))
                {
                    if (job.State == JobState.Pending && (job.ScheduleState == ScheduleState.Ready
                        || (job.ScheduleState == ScheduleState.WaitingForDependencies && job.Request.After is not { Count: > 0 })))
                    {
                        waiting++;
                        oldest = oldest is { } o && o <= job.EnqueuedAt ? o : job.EnqueuedAt;
                    }
                }

                list.Add(new QueueActivity(queue.Name, queue.Limit, queue.Paused, waiting, queue.Running, oldest,
                    _lastStarted.TryGetValue(queue.Name, out var last) ? last : null));
            }

            return list;
        }
    }

    public IReadOnlyList<JobInfo> List()
    {
        lock (_gate)
        {
            var list = new List<JobInfo>(_scheduler.Count);
            foreach (var name in _scheduler.QueueNames)
            {
                var position = 0;
                foreach (var job in _scheduler.JobsOf(name))
                {
                    list.Add(Snapshot(job, job.QueueState.Limit == 0 ? null : position++));
                }
            }

            return list;
        }
    }

    public JobInfo? GetJob(string jobId)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        lock (_gate)
        {
            // Found in O(1); its position costs O(1) when it is running or the last of its set, O(n) otherwise.
            return _scheduler.TryGetJob(jobId, out var job) ? Snapshot(job, Position(job)) : null;
        }
    }

    public async ValueTask<bool> KillAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        return (await KillAsync([jobId], cancellationToken).ConfigureAwait(false)).Count > 0;
    }

    public ValueTask<IReadOnlyList<string>> KillAsync(IEnumerable<string> jobIds, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobIds);
        cancellationToken.ThrowIfCancellationRequested();
        var killed = new List<string>();
        var toStop = new List<Job>();
        var toStart = new List<Job>();
        var unique = new HashSet<string>(StringComparer.Ordinal);
        lock (_gate)
        {
            foreach (var id in jobIds)
            {
                if (id is null || !unique.Add(id) || !_scheduler.TryGetJob(id, out var job))
                {
                    continue;
                }

                killed.Add(id);
                _metrics.Killed(job.Queue);
                DispatcherLog.JobKilled(_logger, id, job.State);
                if (job.ScheduleState == ScheduleState.Running)
                {
                    if (MarkStopping(job, JobOutcome.Killed))
                    {
                        toStop.Add(job);
                    }
                }
                else
                {
                    FinishPending(job, JobOutcome.Killed, toStart);
                }
            }
        }

        Launch(toStart);
        foreach (var job in toStop)
        {
            _ = EnforceStopAsync(job);
        }

        return ValueTask.FromResult<IReadOnlyList<string>>(killed);
    }

    public JobResult? GetResult(string jobId)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        lock (_gate)
        {
            Prune();
            return _finished.GetValueOrDefault(jobId);
        }
    }

    public IReadOnlyList<JobResult> ListFinished()
    {
        lock (_gate)
        {
            Prune();
            return [.. _finishedOrder.Where(r => ReferenceEquals(_finished.GetValueOrDefault(r.Id), r))];
        }
    }

    public Task<JobResult> WaitForCompletionAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        lock (_gate)
        {
            if (_scheduler.TryGetJob(jobId, out var job))
            {
                return job.Completion.Task.WaitAsync(cancellationToken);
            }

            Prune();
            return _finished.TryGetValue(jobId, out var result)
                ? Task.FromResult(result)
                : Task.FromException<JobResult>(new JobNotFoundException(jobId));
        }
    }

    public DispatcherSubscription Subscribe() => _events.Subscribe();

    /// <summary>
    /// A subscription with its own buffer size (the protocol's event feed, which serves every client through one), and, when
    /// <paramref name="holdCommandEvents"/>, not woken for a command's start or end (see <see cref="EventHub.Subscribe"/>).
    /// </summary>
    internal DispatcherSubscription Subscribe(int capacity, bool holdCommandEvents = false) => _events.Subscribe(capacity, holdCommandEvents);

    /// <summary>
    /// Stops the dispatcher: no new jobs are accepted, pending jobs finish as interrupted, running jobs get the grace period and
    /// are then killed. When <paramref name="cancellationToken"/> fires first, whatever still runs is killed at once.
    /// </summary>
    public Task StopAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            _stopTask ??= StopCoreAsync();
        }

        return WaitStopAsync(_stopTask, cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _wakeTimer.DisposeAsync().ConfigureAwait(false);
        _containment?.Dispose();
        _metrics.Dispose();
    }

    private async Task WaitStopAsync(Task stop, CancellationToken cancellationToken)
    {
        try
        {
            await stop.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The host's patience ran out before the grace period: kill what is left now, then finish the stop.
            Job[] running;
            lock (_gate)
            {
                running = [.. _scheduler.Jobs];
            }

            foreach (var job in running)
            {
                if (job.Run is { } run)
                {
                    await CancelSafelyAsync(run.Forceful).ConfigureAwait(false);
                }
            }

            await stop.ConfigureAwait(false);
        }
    }

    private async Task StopCoreAsync()
    {
        Job[] running;
        lock (_gate)
        {
            _stopping = true;
            _scheduler.Halt();
            _wakeTimer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            running = [.. _scheduler.Jobs.Where(j => j.ScheduleState == ScheduleState.Running)];
            var pending = _scheduler.Jobs.Where(j => j.ScheduleState != ScheduleState.Running).OrderBy(j => j.Sequence).ToArray();
            DispatcherLog.Stopping(_logger, running.Length, pending.Length, _store is not null);
            if (_store is null)
            {
                // Nowhere to keep them: they end here, and say so. Removed newest first, so no removal skips a dependent
                // (a job always comes after the jobs it depends on) and each one ends as interrupted.
                foreach (var job in Enumerable.Reverse(pending))
                {
                    _ = _scheduler.Remove(job);
                    _metrics.LeftQueueUnstarted(job.Queue);
                }

                foreach (var job in pending)
                {
                    Finish(job, JobOutcome.Interrupted, []);
                }
            }
            else
            {
                foreach (var job in pending)
                {
                    // They stay pending in the store and run after the restart; only in-process waiters are released.
                    ReleaseKeptJob(job);
                }
            }

            running = [.. running.Where(j => MarkStopping(j, JobOutcome.Interrupted))];
        }

        await Task.WhenAll(running.Select(EnforceStopAsync)).ConfigureAwait(false);
        Task[] remaining;
        lock (_gate)
        {
            remaining = [.. _scheduler.Jobs.Where(j => j.ScheduleState == ScheduleState.Running).Select(j => (Task)j.Completion.Task)];
        }

        await Task.WhenAll(remaining).ConfigureAwait(false);
        if (_store is not null && _ownsStore)
        {
            await _store.DisposeAsync().ConfigureAwait(false);
        }
        else if (_store is not null)
        {
            // Not ours to dispose (the container does): wait for the last record, which the store applies after all others.
            Task last;
            lock (_gate)
            {
                last = _lastWrite;
            }

            await Task.WhenAny(last).ConfigureAwait(false);
        }

        _events.CompleteAll();
    }

    private static void ReleaseKeptJob(Job job) => job.CompletionIfAny?.TrySetException(new DispatcherException(
        $"The dispatcher stopped before job '{job.Id}' finished; it stays pending in the job store and runs after the restart."));

    /// <summary>Checks a request; each command string is split once here to find empty ones (and again when the job starts).</summary>
    private static void Validate(JobRequest request)
    {
        var id = request.Id ?? string.Empty;
        if (string.IsNullOrWhiteSpace(request.Id))
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, "The job id must not be empty.");
        }

        if (request.Commands is null || request.Commands.Count == 0)
        {
            throw new JobRejectedException(id, JobRejectionReason.NoCommands, $"Job '{id}' has no commands.");
        }

        if (request.Queue is null)
        {
            throw new JobRejectedException(id, JobRejectionReason.UnknownQueue, $"Job '{id}' names no queue.");
        }

        if (request.Timeout is { } timeout && timeout <= TimeSpan.Zero)
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Job '{id}' has a timeout of {timeout}; it must be positive.");
        }

        if (request.Limits?.Problem($"Job '{id}'") is { } limits)
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, limits);
        }

        if (request.Delay is { } delay && delay < TimeSpan.Zero)
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Job '{id}' has a delay of {delay}; it must not be negative.");
        }

        if (request.Delay is not null && request.StartAt is not null)
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Job '{id}' sets both a delay and a start time; give one.");
        }

        if (request.Retry is { } retry && (retry.Count < 0 || retry.Delay < TimeSpan.Zero || retry.Backoff < 1 || double.IsNaN(retry.Backoff)))
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest,
                $"Job '{id}' has an invalid retry policy: the count and delay must not be negative and the backoff must be at least 1.");
        }

        if (request.After is { } after && after.Any(string.IsNullOrEmpty))
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Job '{id}' depends on an empty job id.");
        }

        if (request.ArgumentVectors is { } vectors && (vectors.Count != request.Commands.Count || vectors.Any(v => v is not null && v.Any(a => a is null))))
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest,
                $"Job '{id}' has {vectors.Count} argument vector(s) for {request.Commands.Count} command(s); give one per command, without null arguments.");
        }

        for (var i = 0; i < request.Commands.Count; i++)
        {
            var command = request.Commands[i];
            var count = request.ArgumentVectors?[i] is { } vector ? vector.Count : command is null ? 0 : CommandLine.Split(command).Count;
            if (count == 0)
            {
                throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Command {i} of job '{id}' is empty.");
            }
        }

    }

    /// <summary>
    /// Sorts a request's dependencies: those still pending or running are waited for; a finished one that succeeded is met; a
    /// finished one that did not succeed means the job is skipped (its id is returned). An id that is neither is refused. Under the lock.
    /// </summary>
    private (List<string>? WaitFor, string? Failed) ResolveDependencies(JobRequest request)
    {
        if (request.After is not { Count: > 0 } after)
        {
            return (null, null);
        }

        List<string>? waitFor = null;
        string? failed = null;
        foreach (var id in after)
        {
            if (id == request.Id)
            {
                throw Reject(request.Id, JobRejectionReason.UnknownDependency, $"Job '{request.Id}' cannot depend on itself.");
            }

            if (_scheduler.Contains(id))
            {
                (waitFor ??= []).Add(id);
            }
            else if (_finished.TryGetValue(id, out var result))
            {
                if (result.Outcome != JobOutcome.Succeeded)
                {
                    failed ??= id;
                }
            }
            else
            {
                throw Reject(request.Id, JobRejectionReason.UnknownDependency,
                    $"Job '{request.Id}' depends on '{id}', which is not pending, running or among the retained finished jobs.");
            }
        }

        return (waitFor, failed);
    }

    private JobRejectedException Reject(string id, JobRejectionReason reason, string message)
    {
        _metrics.Rejected();
        DispatcherLog.JobRejected(_logger, id, reason, message);
        return new JobRejectedException(id, reason, message);
    }

    private static int? Position(Job job) => job.QueueState.Limit == 0 ? null : JobScheduler<Job>.PositionOf(job) is var p and >= 0 ? p : null;

    private static JobInfo Snapshot(Job job, int? position) =>
        new(job.Id, job.Queue, job.Commands, job.State, position, job.EnqueuedAt, job.StartedAt,
            job.CurrentCommand >= 0 ? job.CurrentCommand : null)
        {
            Priority = job.Priority,
            Attempt = job.Attempt,
            NotBefore = job.State == JobState.Pending ? job.NotBefore : null,
            Labels = job.Request.Labels,
        };

    /// <summary>The job an idempotency key already made (pending, running, or finished and retained), or null. Under the lock.</summary>
    private JobInfo? Idempotent(JobRequest request)
    {
        if (request.IdempotencyKey is not { } key || !_idempotencyKeys.TryGetValue(key, out var id))
        {
            return null;
        }

        if (_scheduler.TryGetJob(id, out var job))
        {
            return Snapshot(job, Position(job));
        }

        Prune();
        return _finished.TryGetValue(id, out var result) && result.IdempotencyKey == key
            ? new JobInfo(result.Id, result.Queue, result.Commands, JobState.Finished, null, result.EnqueuedAt, result.StartedAt, null) { Attempt = result.Attempt, Labels = result.Labels }
            : null;
    }

    /// <summary>Carries out what the scheduler decided: jobs to start (collected for launch), jobs to skip, queues that drained. Under the lock.</summary>
    private void Apply(SchedulerWork<Job> work, List<Job> toStart)
    {
        foreach (var job in work.Start)
        {
            MarkStarted(job);
            toStart.Add(job);
        }

        foreach (var job in work.Skip)
        {
            _metrics.LeftQueueUnstarted(job.Queue);
            if (_stopping && _store is not null)
            {
                // The job it depended on was interrupted by the stop: the journal decides after the restart.
                ReleaseKeptJob(job);
                continue;
            }

            DispatcherLog.JobSkipped(_logger, job.Id, "(a dependency)");
            Finish(job, JobOutcome.Skipped, []);
        }

        foreach (var queue in work.Drained)
        {
            DispatcherLog.QueueDrained(_logger, queue);
        }

        ArmTimer();
    }

    private void MarkStarted(Job job)
    {
        job.BeginAttempt(_options.MaxOutputCharacters);
        OpenLog(job);
        job.State = JobState.Running;
        job.StartedAt = _time.GetUtcNow();
        job.NotBefore = null;
        Journal(new JobStartedRecord(job.Id, job.StartedAt.Value));
        _metrics.Started(job.Queue);
        _lastStarted[job.Queue] = job.StartedAt.Value;
        DispatcherTracing.Started(job.Activity);
        DispatcherLog.JobStarted(_logger, job.Id, job.Queue);
        if (_events.HasSubscribers)
        {
            _events.Publish(new JobStartedEvent(Snapshot(job, Position(job)), job.StartedAt.Value));
        }
    }

    /// <summary>Points the one timer at the earliest delayed job. Under the lock.</summary>
    private void ArmTimer()
    {
        var due = _stopping ? null : NextWakeUp();
        if (due == _armedFor)
        {
            return;
        }

        _armedFor = due;
        if (due is { } at)
        {
            var wait = at - _time.GetUtcNow();
            _wakeTimer.Change(wait < TimeSpan.Zero ? TimeSpan.Zero : wait, Timeout.InfiniteTimeSpan);
        }
        else
        {
            _wakeTimer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnWake()
    {
        var toStart = new List<Job>();
        lock (_gate)
        {
            _armedFor = null;
            if (_stopping)
            {
                return;
            }

            Apply(_scheduler.Tick(), toStart);
            FireRecurrences(toStart);
            ArmTimer();
        }

        Launch(toStart);
    }

    private void Launch(List<Job> jobs)
    {
        foreach (var job in jobs)
        {
            // The local queue of the current pool thread (a job that just ended, usually) picks it up next: no hop through the
            // global queue between one job's end and the next one's start.
            ThreadPool.UnsafeQueueUserWorkItem(static state => _ = state.Self.RunJobAsync(state.Job), (Self: this, Job: job), preferLocal: true);
        }
    }

    /// <summary>
    /// Starts the jobs a finished job made room for. The first starts on this thread (the runner's completion thread, which
    /// would otherwise hand it to the pool and go idle): its command is spawned before this returns, the rest is asynchronous.
    /// Nesting is bounded, for runners whose commands end without ever waiting (a program that is not there).
    /// </summary>
    private void LaunchFromFinish(List<Job> jobs)
    {
        if (jobs.Count == 0)
        {
            return;
        }

        // Not handed to the pool when other jobs of its queue are running (tried: on a loaded machine it lifted queue limits 2
        // and 8 from 0.57x / 0.54x to 0.97x / 2.13x the C loop, but on a quiet one limit 2 fell from 0.79x to 0.66x, and the
        // spawns, each holding a pool thread until its child has exec'd, delayed the event feed and the WebSocket sends: a
        // burst's delivery p99 went from 5-10 ms to 40-68 ms with 1 to 100 subscribers, same runs against the build without it).
        if (t_inlineLaunchDepth >= MaxInlineLaunchDepth)
        {
            Launch(jobs);
            return;
        }

        Launch(jobs.GetRange(1, jobs.Count - 1));
        t_inlineLaunchDepth++;
        try
        {
            _ = RunJobAsync(jobs[0]);
        }
        finally
        {
            t_inlineLaunchDepth--;
        }
    }

    private async Task RunJobAsync(Job job)
    {
        var failed = false;
        try
        {
            // Resolved again at the start: a job restored from the journal runs as it was meant to, or not at all.
            job.RunAs = RunAsUser.ForJob(job.Request, QueueOptionsOf(job.Queue), _options);
            if (_containment is not null)
            {
                job.Cgroup = _containment.Start(job.Id, JobLimits.Combine(QueueOptionsOf(job.Queue)?.Limits, job.Request.Limits),
                    job.Graceful.Token, job.Forceful.Token);
            }

            if (job.Timeout is { } timeout)
            {
                job.TimeoutTimer = _time.CreateTimer(static state =>
                {
                    var (self, j) = ((DefaultDispatcher, Job))state!;
                    self.StopOnTimeout(j);
                }, (this, job), timeout, Timeout.InfiniteTimeSpan);
            }

            for (var i = 0; i < job.Commands.Count && !failed; i++)
            {
                lock (_gate)
                {
                    if (job.StopReason is not null)
                    {
                        break;
                    }

                    job.CurrentCommand = i;
                    job.Output.StartCommand();
                }

                var started = _time.GetUtcNow();
                if (_events.HasSubscribers)
                {
                    _events.Publish(new JobCommandStartedEvent(job.Id, i, job.Commands[i], started));
                }

                var command = new JobCommand(job.Id, i, job.Commands[i], job.ArgvOf(i), job.Request.WorkingDirectory,
                    job.RunAs is null ? job.Request.Environment : job.RunAs.Environment(job.Request.Environment))
                {
                    StandardInputFile = job.StandardInputFile ??= WriteStandardInput(job),
                    Cgroup = job.Cgroup,
                    RunAs = job.RunAs,
                };
                var sink = new OutputSink(this, job, i);
                int exitCode;
                var commandSpan = DispatcherTracing.StartCommand(job.Activity, job.Id, i);
                try
                {
                    exitCode = await _runner.RunAsync(command, sink, job.Forceful.Token, job.Graceful.Token).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    DispatcherLog.CommandNotStarted(_logger, job.Id, i, ex);
                    sink.Write(ProgramResolver.CannotRun(command.Program, ex.Message));
                    exitCode = ProgramResolver.NotStartedExitCode;
                }

                DispatcherTracing.CommandFinished(commandSpan, exitCode);

                var finished = _time.GetUtcNow();
                job.Exits.Add((exitCode, started, finished));
                job.Usages.Add(sink.Usage);
                if (_events.HasSubscribers)
                {
                    _events.Publish(new JobCommandFinishedEvent(job.Id, i, job.Commands[i], exitCode, finished));
                }

                failed = exitCode != 0;
            }
        }
        catch (Exception ex)
        {
            DispatcherLog.RunnerFault(_logger, job.Id, ex);
            failed = true;
        }
        finally
        {
            FinishRunning(job, failed);
        }
    }

    private void StopOnTimeout(Job job)
    {
        bool stop;
        lock (_gate)
        {
            stop = MarkStopping(job, JobOutcome.TimedOut);
        }

        if (stop)
        {
            DispatcherLog.JobTimedOut(_logger, job.Id, job.Timeout ?? TimeSpan.Zero);
            _ = EnforceStopAsync(job);
        }
    }

    /// <summary>Records why a running job is being stopped; false if it is not running or already stopping. Called under the lock.</summary>
    private static bool MarkStopping(Job job, JobOutcome reason)
    {
        if (job.State != JobState.Running || job.StopReason is not null)
        {
            return false;
        }

        job.StopReason = reason;
        return true;
    }

    /// <summary>SIGTERM to the job's tree now; SIGKILL if it has not finished after the grace period.</summary>
    private async Task EnforceStopAsync(Job job)
    {
        // This attempt's sources: a retry gives the job new ones, which this stop must not touch.
        var run = job.Run!;
        var (attempt, graceful, forceful) = (run.Done.Task, run.Graceful, run.Forceful);
        await CancelSafelyAsync(graceful).ConfigureAwait(false);
        try
        {
            await attempt.WaitAsync(_options.KillGracePeriod, _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            DispatcherLog.JobForceKilled(_logger, job.Id, _options.KillGracePeriod);
            await CancelSafelyAsync(forceful).ConfigureAwait(false);
            await attempt.ConfigureAwait(false);
        }
    }

    private async Task CancelSafelyAsync(CancellationTokenSource source)
    {
        try
        {
            await source.CancelAsync().ConfigureAwait(false);
        }
        catch (AggregateException ex)
        {
            DispatcherLog.RunnerFault(_logger, "(signal)", ex);
        }
    }

    /// <summary>Ends a job that has not started (killed): it leaves the scheduler, and the jobs that depend on it are skipped. Under the lock.</summary>
    private void FinishPending(Job job, JobOutcome outcome, List<Job> toStart)
    {
        var work = _scheduler.Remove(job);
        _metrics.LeftQueueUnstarted(job.Queue);
        Finish(job, outcome, []);
        Apply(work, toStart);
    }

    private void FinishRunning(Job job, bool failed)
    {
        job.TimeoutTimer?.Dispose();
        DeleteStandardInput(job);
        var results = new CommandResult[job.Exits.Count];
        for (var i = 0; i < results.Length; i++)
        {
            var (text, dropped) = job.Output.Snapshot(i);
            var (code, started, finished) = job.Exits[i];
            results[i] = new CommandResult(i, job.Commands[i], text, dropped, code, started, finished) { Usage = job.Usages[i] };
        }

        var oomKilled = false;
        if (job.Cgroup is { } cgroup)
        {
            oomKilled = failed && cgroup.OomKills() > 0;
            _containment!.End(cgroup, QueueOptionsOf(job.Queue)?.Leftovers ?? LeftoverProcesses.Keep);
        }

        var toStart = new List<Job>();
        TaskCompletionSource attemptDone;
        lock (_gate)
        {
            attemptDone = job.Run!.Done;
            var outcome = job.StopReason ?? (oomKilled ? JobOutcome.OomKilled : failed ? JobOutcome.Failed : JobOutcome.Succeeded);
            SchedulerWork<Job> work;
            if (!_stopping && IsRetried(job, outcome) is { } retryAt)
            {
                var attempt = AttemptResult(job, outcome, results, _time.GetUtcNow());
                Journal(new JobRetryScheduledRecord(attempt, retryAt));
                DispatcherLog.JobRetryScheduled(_logger, job.Id, job.Attempt, outcome, retryAt);
                job.PrepareRetry(attempt);
                job.NotBefore = retryAt;
                work = _scheduler.Retry(job, retryAt);
                if (_events.HasSubscribers)
                {
                    _events.Publish(new JobPendingEvent(Snapshot(job, Position(job)), _time.GetUtcNow()));
                }
            }
            else
            {
                work = _scheduler.Complete(job, outcome == JobOutcome.Succeeded);
                Finish(job, outcome, results);
            }

            Apply(work, toStart);
        }

        attemptDone.TrySetResult();
        LaunchFromFinish(toStart);
    }

    /// <summary>When a failed attempt runs again (retries left, a failure the policy covers), or null. Under the lock.</summary>
    private DateTimeOffset? IsRetried(Job job, JobOutcome outcome)
    {
        if (job.Request.Retry is not { } retry || job.Attempt > retry.Count || outcome is not (JobOutcome.Failed or JobOutcome.TimedOut))
        {
            return null;
        }

        return _time.GetUtcNow() + retry.DelayBefore(job.Attempt + 1);
    }

    private static JobResult AttemptResult(Job job, JobOutcome outcome, CommandResult[] results, DateTimeOffset now) =>
        new(job.Id, job.Queue, job.Commands, outcome, results, job.EnqueuedAt, job.StartedAt, now)
        {
            Attempt = job.Attempt,
            PreviousAttempts = job.PreviousAttempts,
            Labels = job.Request.Labels,
            IdempotencyKey = job.Request.IdempotencyKey,
        };

    /// <summary>Ends a job: retains its result, publishes the one finished event, completes its waiters. Called under the lock.</summary>
    private void Finish(Job job, JobOutcome outcome, CommandResult[] results)
    {
        var now = _time.GetUtcNow();
        job.State = JobState.Finished;
        job.Log?.Dispose();
        var result = AttemptResult(job, outcome, results, now);
        Retain(result);
        if (!(outcome == JobOutcome.Interrupted && job.Request.RerunIfInterrupted))
        {
            // (A job that asked to be re-run stays "started" in the journal, so the next start runs it again.)
            Journal(new JobFinishedRecord(result));
        }

        _metrics.Finished(job.Queue, outcome, now - job.StartedAt, result.Usage);
        DispatcherTracing.JobFinished(job.Activity, outcome, result.ExitCode);
        DispatcherLog.JobFinished(_logger, job.Id, job.Queue, outcome, result.ExitCode, ((now - job.StartedAt) ?? TimeSpan.Zero).TotalMilliseconds);
        _events.Publish(new JobFinishedEvent(result));
        job.CompletionIfAny?.TrySetResult(result);
    }

    private void Retain(JobResult result)
    {
        if (_options.RetainedJobCount > 0)
        {
            _finished[result.Id] = result;
            _finishedOrder.Enqueue(result);
            Prune();
        }
    }

    /// <summary>Appends a record without waiting for it (its failure is logged by the store). Called under the lock, to keep the order.</summary>
    private void Journal(JobStoreRecord record)
    {
        if (_store is null || _stopTask is { IsCompleted: true } || _store.Health.Status == JobStoreStatus.Failed)
        {
            return;
        }

        if (_store is FileJobStore file && !FileJobStore.Acknowledged(record))
        {
            // A job's start, process or end: written into the file before this returns, with no task to watch (a task, its
            // completion and this ContinueWith per record before); a failure sets _repairNeeded through the store's WriteFailed.
            // The file store is always ours, so stopping disposes it, which flushes what is written.
            file.Write(record);
        }
        else
        {
            var write = _store.AppendAsync(record);
            _lastWrite = write;
            ObserveAndRepair(write);
        }

        // By records, and by bytes: a few jobs with large output grow the journal faster than their count says. And after a
        // failed write (a full disk): the rewrite puts back what was lost (a finished job's result) once the storage takes it.
        if (++_journalRecords > 1000 + (4L * (_scheduler.Count + _finishedOrder.Count)) || _store is FileJobStore { WantsCompaction: true }
            || (Volatile.Read(ref _repairNeeded) == 1 && Volatile.Read(ref _repairInFlight) == 0))
        {
            Compact();
        }
    }

    /// <summary>Replaces the journal by the records that still matter. Called under the lock.</summary>
    private void Compact()
    {
        var records = new List<JobStoreRecord>();
        foreach (var queue in _scheduler.GetQueues())
        {
            if (_changedQueues.Contains(queue.Name))
            {
                records.Add(new QueueStateRecord(queue.Name, queue.Limit, queue.Paused, queue.Draining));
            }
        }

        AddRecurrenceRecords(records);
        foreach (var result in _finishedOrder)
        {
            if (ReferenceEquals(_finished.GetValueOrDefault(result.Id), result))
            {
                records.Add(new JobFinishedRecord(result));
            }
        }

        foreach (var job in _scheduler.Jobs.OrderBy(j => j.Sequence))
        {
            records.Add(new JobEnqueuedRecord(job.Request, job.EnqueuedAt));
            if (job.PreviousAttempts.Count > 0)
            {
                records.Add(new JobRetryScheduledRecord(job.PreviousAttempts[^1], job.NotBefore ?? job.PreviousAttempts[^1].FinishedAt));
            }

            if (job.StartedAt is { } started)
            {
                records.Add(new JobStartedRecord(job.Id, started));
                records.AddRange(job.Processes ?? []);
            }
        }

        _journalRecords = records.Count;
        Volatile.Write(ref _repairNeeded, 0);
        Volatile.Write(ref _repairInFlight, 1);
        var rewrite = _store!.RewriteAsync(records);
        _lastWrite = rewrite;
        ObserveAndRepair(rewrite);
        _ = rewrite.ContinueWith(static (_, self) => Volatile.Write(ref ((DefaultDispatcher)self!)._repairInFlight, 0), this,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Fire and forget, but observed: a store failure is logged by the store, and must not surface as unobserved. A failed
    /// record is not retried by itself; the next journal write rewrites the journal from the dispatcher's state instead.
    /// </summary>
    private void ObserveAndRepair(Task task) => _ = task.ContinueWith(static (t, self) =>
    {
        _ = t.Exception;
        Volatile.Write(ref ((DefaultDispatcher)self!)._repairNeeded, 1);
    }, this, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    /// <summary>
    /// Replays the journal: queue states come back, retained results come back, jobs that were running are finished as
    /// interrupted (or queued again when they asked to be), pending jobs go back into their queues in their original order,
    /// with their dependencies, start times and attempts, and start.
    /// </summary>
    private async Task RecoverAsync(IJobStore store, CancellationToken cancellationToken)
    {
        long records = 0;
        var active = new Dictionary<string, RecoveredJob>(StringComparer.Ordinal);
        var outcomes = new Dictionary<string, JobOutcome>(StringComparer.Ordinal);
        var queueStates = new Dictionary<string, QueueStateRecord>(StringComparer.Ordinal);
        var recurrences = new Dictionary<string, RecurrenceRecord>(StringComparer.Ordinal);
        long order = 0;
        var finished = 0;
        await foreach (var record in store.LoadAsync(cancellationToken).ConfigureAwait(false))
        {
            records++;
            switch (record)
            {
                case JobEnqueuedRecord e:
                    active[e.JobId] = new RecoveredJob(e, order++);
                    break;
                case JobStartedRecord s when active.TryGetValue(s.JobId, out var entry):
                    entry.StartedAt = s.StartedAt;
                    break;
                case JobProcessStartedRecord p when active.TryGetValue(p.JobId, out var entry):
                    entry.Processes.Add(p);
                    break;
                case JobRetryScheduledRecord r when active.TryGetValue(r.JobId, out var entry):
                    entry.StartedAt = null;
                    entry.LastAttempt = r.Attempt;
                    entry.NotBefore = r.NotBefore;
                    break;
                case JobFinishedRecord f:
                    active.Remove(f.JobId);
                    outcomes[f.JobId] = f.Result.Outcome;
                    if (f.Result.IdempotencyKey is { } finishedKey)
                    {
                        _idempotencyKeys[finishedKey] = f.JobId;
                    }

                    lock (_gate)
                    {
                        Retain(f.Result);
                    }

                    finished++;
                    break;
                case QueueStateRecord q:
                    queueStates[q.Queue] = q;
                    break;
                case RecurrenceRecord r:
                    recurrences[r.RecurrenceId] = r;
                    break;
                case RecurrenceRemovedRecord r:
                    recurrences.Remove(r.RecurrenceId);
                    break;
            }
        }

        // Before anything starts: a command of a job the crash interrupted may still be running, and its queue's limit
        // counts it (two pkg_queue jobs at once otherwise). Its processes are found by session and start time, never by pid alone.
        await EndLeftoversAsync(active.Values.Where(e => e.StartedAt is not null).ToList(), cancellationToken).ConfigureAwait(false);

        // Then by cgroup: what left the job's sessions (a grandchild that called setsid) is still in the job's cgroup.
        _containment?.KillLeftoversOfPreviousRun();

        var interrupted = 0;
        var restored = 0;
        var toStart = new List<Job>();
        lock (_gate)
        {
            foreach (var q in queueStates.Values)
            {
                // Draining comes back after the jobs: a draining queue refuses new jobs, not the ones it held.
                _scheduler.Restore(q.Queue, q.Limit, q.Paused, draining: false);
                _changedQueues.Add(q.Queue);
            }

            foreach (var entry in active.Values.OrderBy(e => e.Order))
            {
                var request = entry.Enqueued.Request;
                var valid = true;
                try
                {
                    Validate(request);
                }
                catch (JobRejectedException)
                {
                    valid = false;
                }

                if ((entry.StartedAt is not null && !request.RerunIfInterrupted) || !valid || !_scheduler.HasQueue(request.Queue)
                    || _scheduler.Contains(request.Id))
                {
                    var result = new JobResult(request.Id, request.Queue, request.Commands, JobOutcome.Interrupted, [], entry.Enqueued.EnqueuedAt,
                        entry.StartedAt, _time.GetUtcNow())
                    {
                        Attempt = (entry.LastAttempt?.Attempt ?? 0) + 1,
                        PreviousAttempts = entry.LastAttempt is { } last ? [.. last.PreviousAttempts, last] : [],
                        Labels = request.Labels,
                        IdempotencyKey = request.IdempotencyKey,
                    };
                    outcomes[request.Id] = JobOutcome.Interrupted;
                    Retain(result);
                    Journal(new JobFinishedRecord(result));
                    _events.Publish(new JobFinishedEvent(result));
                    DispatcherLog.JobInterruptedByRestart(_logger, request.Id, request.Queue);
                    interrupted++;
                    continue;
                }

                var job = new Job(request, request.Timeout ?? _options.DefaultJobTimeout, entry.Enqueued.EnqueuedAt)
                {
                    NotBefore = entry.NotBefore ?? request.StartAt ?? (request.Delay is { } delay ? entry.Enqueued.EnqueuedAt + delay : null),
                };
                if (entry.LastAttempt is { } previous)
                {
                    job.PrepareRetry(previous);
                }

                // A dependency that is no longer held finished before the crash: failed ones skip the job (the crash came between
                // the dependency's end and the skip's record); one not found was compacted away, which only a success allows.
                List<string>? waitFor = null;
                string? failed = null;
                foreach (var dependency in request.After ?? [])
                {
                    if (_scheduler.Contains(dependency))
                    {
                        (waitFor ??= []).Add(dependency);
                    }
                    else if (outcomes.TryGetValue(dependency, out var outcome) && outcome != JobOutcome.Succeeded)
                    {
                        failed ??= dependency;
                    }
                }

                _metrics.Enqueued(job.Queue);
                if (request.IdempotencyKey is { } activeKey)
                {
                    _idempotencyKeys[activeKey] = request.Id;
                }

                if (failed is not null || _scheduler.TrySubmit(job, waitFor, out var work) != SubmitStatus.Accepted)
                {
                    outcomes[request.Id] = JobOutcome.Skipped;
                    Finish(job, JobOutcome.Skipped, []);
                    continue;
                }

                Apply(work, toStart);
                restored++;
            }

            foreach (var q in queueStates.Values.Where(q => q.Draining))
            {
                Apply(_scheduler.Drain(q.Queue), toStart);
            }

            RestoreRecurrences(recurrences.Values, toStart);
            Compact();
            ArmTimer();
        }

        DispatcherLog.Recovered(_logger, restored, interrupted, finished, records);
        Launch(toStart);
    }

    /// <summary>SIGTERM to every process an interrupted job left running, then SIGKILL to what is still there after the grace period.</summary>
    private async Task EndLeftoversAsync(List<RecoveredJob> started, CancellationToken cancellationToken)
    {
        if (!ProcessTree.IsSupported || started.Count == 0)
        {
            return;
        }

        var all = new List<JobProcessStartedRecord>();
        foreach (var entry in started)
        {
            var left = ProcessTree.Leftovers(entry.Processes);
            if (left.Count > 0)
            {
                DispatcherLog.LeftoverProcesses(_logger, entry.Enqueued.JobId, left.Count, string.Join(' ', left), _options.KillGracePeriod);
                all.AddRange(entry.Processes);
            }
        }

        if (all.Count == 0)
        {
            return;
        }

        ProcessTree.SignalLeftovers(all, ProcessTree.SigTerm);
        var deadline = _time.GetUtcNow() + _options.KillGracePeriod;
        while (ProcessTree.Leftovers(all).Count > 0 && _time.GetUtcNow() < deadline)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(50), _time, cancellationToken).ConfigureAwait(false);
        }

        for (var round = 0; round < 10 && ProcessTree.Leftovers(all).Count > 0; round++)
        {
            ProcessTree.SignalLeftovers(all, ProcessTree.SigKill);
            await Task.Delay(TimeSpan.FromMilliseconds(20), _time, cancellationToken).ConfigureAwait(false);
        }
    }

    private void Prune()
    {
        var cutoff = _time.GetUtcNow() - _options.RetainedJobAge;
        while (_finishedOrder.TryPeek(out var oldest) && (_finishedOrder.Count > _options.RetainedJobCount || oldest.FinishedAt < cutoff))
        {
            _finishedOrder.Dequeue();
            if (_finished.TryGetValue(oldest.Id, out var current) && ReferenceEquals(current, oldest))
            {
                _finished.Remove(oldest.Id);
                if (oldest.IdempotencyKey is { } key && _idempotencyKeys.TryGetValue(key, out var keyed) && keyed == oldest.Id && !_scheduler.Contains(oldest.Id))
                {
                    _idempotencyKeys.Remove(key);
                }

                if (_logs is not null && !_scheduler.Contains(oldest.Id))
                {
                    _logs.Delete(oldest.Id);
                }
            }
        }
    }

    private sealed class RecoveredJob(JobEnqueuedRecord enqueued, long order)
    {
        public JobEnqueuedRecord Enqueued { get; } = enqueued;

        public long Order { get; } = order;

        public DateTimeOffset? StartedAt { get; set; }

        public JobResult? LastAttempt { get; set; }

        public DateTimeOffset? NotBefore { get; set; }

        public List<JobProcessStartedRecord> Processes { get; } = [];
    }

    /// <summary>
    /// A job. What only a running attempt needs (cancellation sources, output buffers, exit codes) is allocated when it starts,
    /// and the command strings are split again then: a pending job costs a few hundred bytes beyond its request.
    /// </summary>
    private sealed class Job(JobRequest request, TimeSpan? timeout, DateTimeOffset enqueuedAt)
        : ScheduledJob(request.Id, request.Queue, request.Priority)
    {
        private TaskCompletionSource<JobResult>? _completion;

        public JobRequest Request { get; } = request;

        public IReadOnlyList<string> Commands { get; } = [.. request.Commands];

        public TimeSpan? Timeout { get; } = timeout;

        public DateTimeOffset EnqueuedAt { get; } = enqueuedAt;

        public JobState State { get; set; }

        public DateTimeOffset? StartedAt { get; set; }

        public int CurrentCommand { get; set; } = -1;

        public JobOutcome? StopReason { get; set; }

        public ITimer? TimeoutTimer { get; set; }

        public JobCgroup? Cgroup { get; set; }

        public RunAsUser? RunAs { get; set; }

        /// <summary>Gets or sets the job's span (enqueue to finish), or null when no listener samples it.</summary>
        public Activity? Activity { get; set; }

        /// <summary>Gets the attempt number, 1 for the first run.</summary>
        public int Attempt { get; private set; } = 1;

        public IReadOnlyList<JobResult> PreviousAttempts { get; private set; } = [];

        /// <summary>Gets the running attempt's state, or null while the job has not started (or waits for a retry).</summary>
        public AttemptState? Run { get; private set; }

        public CancellationTokenSource Graceful => Run!.Graceful;

        public CancellationTokenSource Forceful => Run!.Forceful;

        public OutputLog Output => Run!.Output;

        public List<(int ExitCode, DateTimeOffset Started, DateTimeOffset Finished)> Exits => Run!.Exits;

        public List<CommandUsage?> Usages => Run!.Usages;

        /// <summary>Gets the task of the job's end, made when someone first waits for it. Under the dispatcher's lock.</summary>
        public TaskCompletionSource<JobResult> Completion => _completion ??= new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Gets the task of the job's end if anyone waits for it.</summary>
        public TaskCompletionSource<JobResult>? CompletionIfAny => _completion;

        /// <summary>Gets or sets the processes its commands started (journaled, so a restart after a crash can end them); null until one starts.</summary>
        public List<JobProcessStartedRecord>? Processes { get; set; }

        /// <summary>Gets or sets the file holding the job's standard input while it runs.</summary>
        public string? StandardInputFile { get; set; }

        /// <summary>Gets or sets the job's full log (with a data directory), opened when its first attempt starts.</summary>
        public JobLogs.JobLog? Log { get; set; }

        /// <summary>The program and arguments of a command: the argument vector given, or the command string split.</summary>
        public IReadOnlyList<string> ArgvOf(int index) => Request.ArgumentVectors?[index] ?? CommandLine.Split(Commands[index]);

        /// <summary>Allocates the state of an attempt that starts now.</summary>
        public void BeginAttempt(int outputLimit) => Run = new AttemptState(outputLimit);

        /// <summary>Resets the per-attempt state after <paramref name="attempt"/> ended and the job runs again.</summary>
        public void PrepareRetry(JobResult attempt)
        {
            PreviousAttempts = [.. attempt.PreviousAttempts, attempt];
            Attempt = attempt.Attempt + 1;
            State = JobState.Pending;
            StartedAt = null;
            CurrentCommand = -1;
            StopReason = null;
            TimeoutTimer = null;
            Run = null;
            Processes = null;
        }
    }

    /// <summary>What one running attempt of a job needs.</summary>
    private sealed class AttemptState(int outputLimit)
    {
        public CancellationTokenSource Graceful { get; } = new();

        public CancellationTokenSource Forceful { get; } = new();

        /// <summary>Completes when the attempt's processes are gone (what a kill waits for; a retry does not end the job).</summary>
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public OutputLog Output { get; } = new(outputLimit);

        public List<(int ExitCode, DateTimeOffset Started, DateTimeOffset Finished)> Exits { get; } = [];

        public List<CommandUsage?> Usages { get; } = [];
    }

    private sealed class OutputSink(DefaultDispatcher dispatcher, Job job, int index) : IJobOutput, IJobProcessListener, ICommandUsageSink
    {
        public CommandUsage? Usage { get; private set; }

        public void Report(CommandUsage usage) => Usage = usage;

        public void ProcessStarted(int processId, ulong? startTime)
        {
            if (dispatcher._store is null || ProcessTree.Identify(processId, startTime) is not { } identity)
            {
                return;
            }

            var record = new JobProcessStartedRecord(job.Id, index, processId, identity.StartTime, identity.BootId);
            lock (dispatcher._gate)
            {
                if (job.State == JobState.Running)
                {
                    (job.Processes ??= []).Add(record);
                    dispatcher.Journal(record);
                }
            }
        }

        public void Write(ReadOnlySpan<char> text)
        {
            if (text.IsEmpty)
            {
                return;
            }

            job.Output.Append(text);
            job.Log?.Append(text);
            if (dispatcher._events.HasSubscribers)
            {
                dispatcher._events.Publish(new JobOutputEvent(job.Id, index, text.ToString(), dispatcher._time.GetUtcNow()));
            }
        }
    }
}

/// <summary>A queue's load at one moment: <paramref name="OldestWaitingSince"/> is when the oldest job that could start was enqueued.</summary>
internal readonly record struct QueueActivity(string Name, int Limit, bool Paused, int Waiting, int Running, DateTimeOffset? OldestWaitingSince,
    DateTimeOffset? LastStartedAt);
