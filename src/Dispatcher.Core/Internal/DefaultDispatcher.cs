using System.Diagnostics.Metrics;
using Dispatcher.Events;
using Dispatcher.Running;
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
/// The dispatcher. One lock guards the queues, the active jobs and the retained results; nothing polls: a job starts inside the
/// call that made room for it (an enqueue, or the end of another job).
/// </summary>
internal sealed class DefaultDispatcher : IDispatcher, IAsyncDisposable
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
    private readonly Dictionary<string, QueueState> _queues = new(StringComparer.Ordinal);
    private readonly QueueState[] _queueOrder;
    private readonly Dictionary<string, Job> _active = new(StringComparer.Ordinal);
    private readonly Dictionary<string, JobResult> _finished = new(StringComparer.Ordinal);
    private readonly Queue<JobResult> _finishedOrder = new();
    private readonly IJobStore? _store;
    private readonly bool _ownsStore;
    private Task? _startTask;
    private Task _lastWrite = Task.CompletedTask;
    private long _journalRecords;
    private int _repairNeeded;
    private int _repairInFlight;
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
        foreach (var (name, q) in _options.Queues)
        {
            _queues.Add(name, new QueueState(name, q.MaxConcurrency));
        }

        _queueOrder = [.. _queues.Values];
        Queues = [.. _queues.Keys];
        // No I/O here: the journal is read when the host starts (StartAsync), or at the first enqueue without a host.
        var store = customStore?.Store;
        _ownsStore = store is null;
        _store = store ?? (_options.DataDirectory is { } directory
            ? new FileJobStore(directory, _options.FlushToDisk, _logger, _metrics, _options.MaxOutputCharacters)
            : null);
    }

    /// <summary>Gets the job store: the one plugged in with <c>UseJobStore</c>, the file journal, or <see langword="null"/> in memory.</summary>
    internal IJobStore? Store => _store;

    /// <summary>
    /// Replays the job store (once): retained results come back, processes that a crash left behind are ended, pending jobs start.
    /// The hosted service calls it when the host starts; an enqueue before that waits for it.
    /// </summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            _startTask ??= _store is null ? LogInMemory() : Task.Run(() => RecoverAsync(_store, cancellationToken), CancellationToken.None);
        }

        return _startTask.WaitAsync(cancellationToken);
    }

    private Task LogInMemory()
    {
        DispatcherLog.InMemory(_logger);
        return Task.CompletedTask;
    }

    public IReadOnlyCollection<string> Queues { get; }

    public async ValueTask<JobInfo> EnqueueAsync(JobRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        var argv = Validate(request);
        if (_startTask is not { IsCompletedSuccessfully: true })
        {
            await StartAsync(CancellationToken.None).WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        List<Job> toStart;
        JobInfo info;
        Task? durable = null;
        Job job;
        lock (_gate)
        {
            if (_stopping)
            {
                throw Reject(request.Id, JobRejectionReason.ShuttingDown, "The dispatcher is stopping and accepts no new jobs.");
            }

            if (_store?.Health is { Status: JobStoreStatus.Failed } failed)
            {
                // Fail at once rather than queue behind a writer that will never write.
                throw Reject(request.Id, JobRejectionReason.StorageFailed, $"Job '{request.Id}' was not accepted: {failed.Description}");
            }

            if (!_queues.TryGetValue(request.Queue, out var queue))
            {
                throw Reject(request.Id, JobRejectionReason.UnknownQueue,
                    $"Unknown queue '{request.Queue}'; the queues are {string.Join(", ", Queues.Select(q => $"'{q}'"))}.");
            }

            if (_active.ContainsKey(request.Id))
            {
                throw Reject(request.Id, JobRejectionReason.DuplicateId, $"A job with id '{request.Id}' is already pending or running.");
            }

            job = new Job(request, argv, request.Timeout ?? _options.DefaultJobTimeout, _time.GetUtcNow(), _options.MaxOutputCharacters)
            {
                QueueState = queue,
                Durable = _store is null,
            };
            job.PendingNode = queue.Pending.AddLast(job);
            _active.Add(job.Id, job);
            if (_store is not null)
            {
                // Appended under the lock, so the journal holds jobs in queue order. The job waits in its queue until the
                // record is durable: a job that ran and then vanished in a crash would be worse than one refused.
                durable = _store.AppendAsync(new JobEnqueuedRecord(job.Request, job.EnqueuedAt));
                _lastWrite = durable;
                _journalRecords++;
            }

            _metrics.Enqueued(queue.Name);
            DispatcherLog.JobEnqueued(_logger, job.Id, queue.Name, job.Commands.Count);
            if (_events.HasSubscribers)
            {
                _events.Publish(new JobPendingEvent(Snapshot(job, PositionOfNewest(queue, job)), job.EnqueuedAt));
            }

            toStart = StartRunnable(queue);
            info = Snapshot(job, PositionOfNewest(queue, job));
        }

        Launch(toStart);
        if (durable is not null)
        {
            // The caller hears "accepted" only once the job would survive a crash (group commit: one flush for many enqueues).
            await MadeDurableAsync(job, durable).ConfigureAwait(false);
        }

        return info;
    }

    /// <summary>Waits for a job's record; then lets it start, or takes it back out of its queue and rejects it.</summary>
    private async Task MadeDurableAsync(Job job, Task durable)
    {
        Exception? failure = null;
        try
        {
            await durable.ConfigureAwait(false);
        }
#pragma warning disable CA1031 // any store failure rejects the job; the store's own exception is the inner one
        catch (Exception ex)
#pragma warning restore CA1031
        {
            failure = ex;
        }

        var queue = job.QueueState;
        if (failure is null)
        {
            // The common case takes no lock: only when the queue stopped at this very job (it was at the head, not yet durable,
            // with room to run) must it be started here. Both sides write, fence, then read (see StartRunnable), so either
            // this thread sees the queue waiting on the job, or the queue sees the job durable: no start is missed.
            job.Durable = true;
            Interlocked.MemoryBarrier();
            if (!ReferenceEquals(Volatile.Read(ref queue.WaitingFor), job))
            {
                return;
            }
        }

        List<Job> toStart;
        lock (_gate)
        {
            if (failure is not null && job.State == JobState.Pending)
            {
                queue.Pending.Remove(job.PendingNode!);
                job.PendingNode = null;
                job.State = JobState.Finished;
                _active.Remove(job.Id);
                _metrics.LeftQueueUnstarted(queue.Name);
                job.Completion.TrySetException(new JobRejectedException(job.Id, JobRejectionReason.StorageFailed, "The job was not recorded."));
                _ = job.Completion.Task.Exception;
            }

            job.Durable = true;
            toStart = _stopping ? [] : StartRunnable(queue);
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

    public IReadOnlyList<JobInfo> List()
    {
        lock (_gate)
        {
            var list = new List<JobInfo>(_active.Count);
            foreach (var queue in _queueOrder)
            {
                var position = 0;
                foreach (var job in queue.Running)
                {
                    list.Add(Snapshot(job, queue.Limit == 0 ? null : position++));
                }

                foreach (var job in queue.Pending)
                {
                    list.Add(Snapshot(job, queue.Limit == 0 ? null : position++));
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
            if (!_active.TryGetValue(jobId, out var job))
            {
                return null;
            }

            var queue = job.QueueState;
            int? position = null;
            if (queue.Limit != 0)
            {
                position = job.State == JobState.Pending ? queue.Running.Count + IndexOf(queue.Pending, job) : queue.Running.IndexOf(job);
            }

            return Snapshot(job, position);
        }

        static int IndexOf(LinkedList<Job> pending, Job job)
        {
            var i = 0;
            for (var node = pending.First; node is not null && node.Value != job; node = node.Next)
            {
                i++;
            }

            return i;
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
        var unique = new HashSet<string>(StringComparer.Ordinal);
        lock (_gate)
        {
            foreach (var id in jobIds)
            {
                if (id is null || !unique.Add(id) || !_active.TryGetValue(id, out var job))
                {
                    continue;
                }

                killed.Add(id);
                _metrics.Killed(job.Queue);
                DispatcherLog.JobKilled(_logger, id, job.State);
                if (job.State == JobState.Pending)
                {
                    FinishPending(job, JobOutcome.Killed);
                }
                else if (MarkStopping(job, JobOutcome.Killed))
                {
                    toStop.Add(job);
                }
            }
        }

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
            if (_active.TryGetValue(jobId, out var job))
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

    /// <summary>A subscription with its own buffer size (the protocol's event feed, which serves every client through one).</summary>
    internal DispatcherSubscription Subscribe(int capacity) => _events.Subscribe(capacity);

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
                running = [.. _active.Values];
            }

            foreach (var job in running)
            {
                await CancelSafelyAsync(job.Forceful).ConfigureAwait(false);
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
            running = [.. _active.Values.Where(j => j.State == JobState.Running)];
            var pending = _active.Values.Where(j => j.State == JobState.Pending).OrderBy(j => j.Sequence).ToArray();
            DispatcherLog.Stopping(_logger, running.Length, pending.Length, _store is not null);
            foreach (var job in pending)
            {
                if (_store is null)
                {
                    // Nowhere to keep them: they end here, and say so.
                    FinishPending(job, JobOutcome.Interrupted);
                }
                else
                {
                    // They stay pending in the store and run after the restart; only in-process waiters are released.
                    job.Completion.TrySetException(new DispatcherException(
                        $"The dispatcher stopped before job '{job.Id}' started; it stays pending in the job store and runs after the restart."));
                }
            }

            running = [.. running.Where(j => MarkStopping(j, JobOutcome.Interrupted))];
        }

        await Task.WhenAll(running.Select(EnforceStopAsync)).ConfigureAwait(false);
        Task[] remaining;
        lock (_gate)
        {
            remaining = [.. _active.Values.Where(j => j.State == JobState.Running).Select(j => (Task)j.Completion.Task)];
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

    private static IReadOnlyList<string>[] Validate(JobRequest request)
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

        var argv = new IReadOnlyList<string>[request.Commands.Count];
        for (var i = 0; i < argv.Length; i++)
        {
            var command = request.Commands[i];
            argv[i] = command is null ? [] : CommandLine.Split(command);
            if (argv[i].Count == 0)
            {
                throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Command {i} of job '{id}' is empty.");
            }
        }

        return argv;
    }

    private JobRejectedException Reject(string id, JobRejectionReason reason, string message)
    {
        _metrics.Rejected();
        DispatcherLog.JobRejected(_logger, id, reason, message);
        return new JobRejectedException(id, reason, message);
    }

    /// <summary>
    /// The position of a job that was just enqueued (called under the same lock as the enqueue): running, it is where it
    /// stands among the running jobs; still pending, it is the last one, since nothing else was enqueued meanwhile.
    /// </summary>
    private static int? PositionOfNewest(QueueState queue, Job job) => queue.Limit == 0
        ? null
        : job.State == JobState.Running ? queue.Running.IndexOf(job) : queue.Running.Count + queue.Pending.Count - 1;

    private static JobInfo Snapshot(Job job, int? position) =>
        new(job.Id, job.Queue, job.Commands, job.State, position, job.EnqueuedAt, job.StartedAt,
            job.CurrentCommand >= 0 ? job.CurrentCommand : null);

    /// <summary>Moves jobs from pending to running while the queue has room. Called under the lock.</summary>
    private List<Job> StartRunnable(QueueState queue)
    {
        var started = new List<Job>();
        while (queue.Pending.First is { } node && (queue.Limit == 0 || queue.Running.Count < queue.Limit))
        {
            var job = node.Value;
            if (!job.Durable)
            {
                // Say what the queue waits for before looking again (the other half of MadeDurableAsync's check).
                Volatile.Write(ref queue.WaitingFor, job);
                Interlocked.MemoryBarrier();
                if (!job.Durable)
                {
                    break;
                }
            }

            queue.WaitingFor = null;
            queue.Pending.RemoveFirst();
            job.PendingNode = null;
            job.State = JobState.Running;
            job.StartedAt = _time.GetUtcNow();
            queue.Running.Add(job);
            Journal(new JobStartedRecord(job.Id, job.StartedAt.Value));
            _metrics.Started(queue.Name);
            DispatcherLog.JobStarted(_logger, job.Id, queue.Name);
            if (_events.HasSubscribers)
            {
                _events.Publish(new JobStartedEvent(Snapshot(job, queue.Limit == 0 ? null : queue.Running.Count - 1), job.StartedAt.Value));
            }

            started.Add(job);
        }

        return started;
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

                var command = new JobCommand(job.Id, i, job.Commands[i], job.Argv[i], job.Request.WorkingDirectory, job.Request.Environment);
                var sink = new OutputSink(this, job, i);
                int exitCode;
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

                var finished = _time.GetUtcNow();
                job.Exits.Add((exitCode, started, finished));
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
        await CancelSafelyAsync(job.Graceful).ConfigureAwait(false);
        try
        {
            await job.Completion.Task.WaitAsync(_options.KillGracePeriod, _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            DispatcherLog.JobForceKilled(_logger, job.Id, _options.KillGracePeriod);
            await CancelSafelyAsync(job.Forceful).ConfigureAwait(false);
            await job.Completion.Task.ConfigureAwait(false);
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

    private void FinishPending(Job job, JobOutcome outcome)
    {
        var queue = job.QueueState;
        queue.Pending.Remove(job.PendingNode!);
        job.PendingNode = null;
        _metrics.LeftQueueUnstarted(queue.Name);
        Finish(job, outcome, []);
    }

    private void FinishRunning(Job job, bool failed)
    {
        job.TimeoutTimer?.Dispose();
        var results = new CommandResult[job.Exits.Count];
        for (var i = 0; i < results.Length; i++)
        {
            var (text, dropped) = job.Output.Snapshot(i);
            var (code, started, finished) = job.Exits[i];
            results[i] = new CommandResult(i, job.Commands[i], text, dropped, code, started, finished);
        }

        List<Job> toStart;
        lock (_gate)
        {
            var outcome = job.StopReason ?? (failed ? JobOutcome.Failed : JobOutcome.Succeeded);
            job.QueueState.Running.Remove(job);
            Finish(job, outcome, results);
            toStart = _stopping ? [] : StartRunnable(job.QueueState);
        }

        LaunchFromFinish(toStart);
    }

    /// <summary>Ends a job: retains its result, publishes the one finished event, completes its waiters. Called under the lock.</summary>
    private void Finish(Job job, JobOutcome outcome, CommandResult[] results)
    {
        var now = _time.GetUtcNow();
        job.State = JobState.Finished;
        _active.Remove(job.Id);
        var result = new JobResult(job.Id, job.Queue, job.Commands, outcome, results, job.EnqueuedAt, job.StartedAt, now);
        Retain(result);
        if (!(outcome == JobOutcome.Interrupted && job.Request.RerunIfInterrupted))
        {
            // (A job that asked to be re-run stays "started" in the journal, so the next start runs it again.)
            Journal(new JobFinishedRecord(result));
        }

        _metrics.Finished(job.Queue, outcome, now - job.StartedAt);
        DispatcherLog.JobFinished(_logger, job.Id, job.Queue, outcome, result.ExitCode, ((now - job.StartedAt) ?? TimeSpan.Zero).TotalMilliseconds);
        _events.Publish(new JobFinishedEvent(result));
        job.Completion.TrySetResult(result);
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

        var write = _store.AppendAsync(record);
        _lastWrite = write;
        ObserveAndRepair(write);

        // By records, and by bytes: a few jobs with large output grow the journal faster than their count says. And after a
        // failed write (a full disk): the rewrite puts back what was lost (a finished job's result) once the storage takes it.
        if (++_journalRecords > 1000 + (4L * (_active.Count + _finishedOrder.Count)) || _store is FileJobStore { WantsCompaction: true }
            || (Volatile.Read(ref _repairNeeded) == 1 && Volatile.Read(ref _repairInFlight) == 0))
        {
            Compact();
        }
    }

    /// <summary>Replaces the journal by the records of the jobs that still matter. Called under the lock.</summary>
    private void Compact()
    {
        var records = new List<JobStoreRecord>();
        foreach (var result in _finishedOrder)
        {
            if (ReferenceEquals(_finished.GetValueOrDefault(result.Id), result))
            {
                records.Add(new JobFinishedRecord(result));
            }
        }

        foreach (var job in _active.Values.OrderBy(j => j.Sequence))
        {
            records.Add(new JobEnqueuedRecord(job.Request, job.EnqueuedAt));
            if (job.StartedAt is { } started)
            {
                records.Add(new JobStartedRecord(job.Id, started));
                records.AddRange(job.Processes);
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
    /// Replays the journal as a stream: retained results come back, jobs that were running are finished as interrupted (or queued
    /// again when they asked to be) after what their processes left running is ended, pending jobs go back into their queues in
    /// their original order and start.
    /// </summary>
    private async Task RecoverAsync(IJobStore store, CancellationToken cancellationToken)
    {
        var active = new Dictionary<string, Recovering>(StringComparer.Ordinal);
        long order = 0;
        long records = 0;
        var finished = 0;
        await foreach (var record in store.LoadAsync(cancellationToken).ConfigureAwait(false))
        {
            records++;
            switch (record)
            {
                case JobEnqueuedRecord e:
                    active[e.JobId] = new Recovering(e, order++);
                    break;
                case JobStartedRecord s when active.TryGetValue(s.JobId, out var entry):
                    entry.StartedAt = s.StartedAt;
                    break;
                case JobProcessStartedRecord p when active.TryGetValue(p.JobId, out var entry):
                    entry.Processes.Add(p);
                    break;
                case JobFinishedRecord f:
                    active.Remove(f.JobId);
                    lock (_gate)
                    {
                        Retain(f.Result);
                    }

                    finished++;
                    break;
            }
        }

        // Before anything starts: a command of a job the crash interrupted may still be running, and its queue's limit
        // counts it (two pkg_queue jobs at once otherwise). Its processes are found by session and start time, never by pid alone.
        await EndLeftoversAsync(active.Values.Where(e => e.StartedAt is not null).ToList(), cancellationToken).ConfigureAwait(false);

        var interrupted = 0;
        var restored = 0;
        List<Job> toStart = [];
        lock (_gate)
        {
            foreach (var entry in active.Values.OrderBy(e => e.Order))
            {
                var (enqueued, startedAt) = (entry.Enqueued, entry.StartedAt);
                var request = enqueued.Request;
                string[][]? argv = null;
                try
                {
                    argv = [.. Validate(request).Select(a => a.ToArray())];
                }
                catch (JobRejectedException)
                {
                }

                if ((startedAt is not null && !request.RerunIfInterrupted) || argv is null || !_queues.TryGetValue(request.Queue, out var queue)
                    || _active.ContainsKey(request.Id))
                {
                    var result = new JobResult(request.Id, request.Queue, request.Commands, JobOutcome.Interrupted, [], enqueued.EnqueuedAt, startedAt, _time.GetUtcNow());
                    Retain(result);
                    Journal(new JobFinishedRecord(result));
                    _events.Publish(new JobFinishedEvent(result));
                    DispatcherLog.JobInterruptedByRestart(_logger, request.Id, request.Queue);
                    interrupted++;
                    continue;
                }

                var job = new Job(request, argv, request.Timeout ?? _options.DefaultJobTimeout, enqueued.EnqueuedAt, _options.MaxOutputCharacters)
                {
                    QueueState = queue,
                    Durable = true,
                };
                job.PendingNode = queue.Pending.AddLast(job);
                _active.Add(job.Id, job);
                _metrics.Enqueued(queue.Name);
                restored++;
            }

            Compact();
            foreach (var queue in _queueOrder)
            {
                toStart.AddRange(StartRunnable(queue));
            }
        }

        DispatcherLog.Recovered(_logger, restored, interrupted, finished, records);
        Launch(toStart);
    }

    /// <summary>SIGTERM to every process an interrupted job left running, then SIGKILL to what is still there after the grace period.</summary>
    private async Task EndLeftoversAsync(List<Recovering> started, CancellationToken cancellationToken)
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

    private sealed class Recovering(JobEnqueuedRecord enqueued, long order)
    {
        public JobEnqueuedRecord Enqueued { get; } = enqueued;

        public long Order { get; } = order;

        public DateTimeOffset? StartedAt { get; set; }

        public List<JobProcessStartedRecord> Processes { get; } = [];
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
            }
        }
    }

    private sealed class QueueState(string name, int limit)
    {
        public string Name { get; } = name;

        public int Limit { get; } = limit;

        public LinkedList<Job> Pending { get; } = new();

        public List<Job> Running { get; } = [];

        /// <summary>The pending job at the head that the queue stopped at because its record was not durable yet, or null.</summary>
#pragma warning disable SA1401, CA1051 // a field, for Volatile and the fences around it
        public Job? WaitingFor;
#pragma warning restore SA1401, CA1051
    }

    private sealed class Job(JobRequest request, IReadOnlyList<string>[] argv, TimeSpan? timeout, DateTimeOffset enqueuedAt, int outputLimit)
    {
        private static long s_sequence;

        public long Sequence { get; } = Interlocked.Increment(ref s_sequence);

        public JobRequest Request { get; } = request;

        public string Id => Request.Id;

        public string Queue => Request.Queue;

        public IReadOnlyList<string> Commands { get; } = [.. request.Commands];

        public IReadOnlyList<string>[] Argv { get; } = argv;

        public TimeSpan? Timeout { get; } = timeout;

        public DateTimeOffset EnqueuedAt { get; } = enqueuedAt;

        public required QueueState QueueState { get; init; }

        /// <summary>Gets or sets whether the job's enqueued record is durable; a job starts only once it is.</summary>
        public bool Durable
        {
            get => Volatile.Read(ref _durable);
            set => Volatile.Write(ref _durable, value);
        }

        private bool _durable;

        /// <summary>Gets the processes its commands started (journaled, so a restart after a crash can end them).</summary>
        public List<JobProcessStartedRecord> Processes { get; } = [];

        public LinkedListNode<Job>? PendingNode { get; set; }

        public JobState State { get; set; }

        public DateTimeOffset? StartedAt { get; set; }

        public int CurrentCommand { get; set; } = -1;

        public JobOutcome? StopReason { get; set; }

        public ITimer? TimeoutTimer { get; set; }

        public CancellationTokenSource Graceful { get; } = new();

        public CancellationTokenSource Forceful { get; } = new();

        public TaskCompletionSource<JobResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public OutputLog Output { get; } = new(outputLimit);

        public List<(int ExitCode, DateTimeOffset Started, DateTimeOffset Finished)> Exits { get; } = [];
    }

    private sealed class OutputSink(DefaultDispatcher dispatcher, Job job, int index) : IJobOutput, IJobProcessListener
    {
        public void ProcessStarted(int processId)
        {
            if (dispatcher._store is null || ProcessTree.Identify(processId) is not { } identity)
            {
                return;
            }

            var record = new JobProcessStartedRecord(job.Id, index, processId, identity.StartTime, identity.BootId);
            lock (dispatcher._gate)
            {
                if (job.State == JobState.Running)
                {
                    job.Processes.Add(record);
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
            if (dispatcher._events.HasSubscribers)
            {
                dispatcher._events.Publish(new JobOutputEvent(job.Id, index, text.ToString(), dispatcher._time.GetUtcNow()));
            }
        }
    }
}
