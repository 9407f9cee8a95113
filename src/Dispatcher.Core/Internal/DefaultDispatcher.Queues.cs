using Dispatcher.Scheduling;
using Dispatcher.Storage;
using Dispatcher.Telemetry;

namespace Dispatcher.Internal;

/// <summary>Queue control at run time: add, limit, pause, resume, drain; each change is a journal record and survives restarts.</summary>
internal sealed partial class DefaultDispatcher
{
    public IReadOnlyList<QueueInfo> GetQueues()
    {
        lock (_gate)
        {
            return _scheduler.GetQueues();
        }
    }

    public ValueTask<QueueInfo> AddQueueAsync(string name, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        return ChangeQueueAsync(name, "added", () =>
        {
            if (!_scheduler.AddQueue(name, limit))
            {
                throw new ArgumentException($"A queue named '{name}' exists already.", nameof(name));
            }

            return null;
        }, mustExist: false, cancellationToken);
    }

    public ValueTask<QueueInfo> SetQueueLimitAsync(string name, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        return ChangeQueueAsync(name, "limit changed", () => _scheduler.SetLimit(name, limit), mustExist: true, cancellationToken);
    }

    public ValueTask<QueueInfo> PauseQueueAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ChangeQueueAsync(name, "paused", () =>
        {
            _scheduler.Pause(name);
            return null;
        }, mustExist: true, cancellationToken);
    }

    public ValueTask<QueueInfo> ResumeQueueAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ChangeQueueAsync(name, "resumed", () => _scheduler.Resume(name), mustExist: true, cancellationToken);
    }

    public ValueTask<QueueInfo> DrainQueueAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return ChangeQueueAsync(name, "draining", () => _scheduler.Drain(name), mustExist: true, cancellationToken);
    }

    private async ValueTask<QueueInfo> ChangeQueueAsync(string name, string change, Func<SchedulerWork<Job>?> apply, bool mustExist,
        CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        var toStart = new List<Job>();
        QueueInfo info;
        Task? durable = null;
        lock (_gate)
        {
            if (mustExist && !_scheduler.HasQueue(name))
            {
                throw new QueueNotFoundException(name,
                    $"Unknown queue '{name}'; the queues are {string.Join(", ", _scheduler.QueueNames.Select(q => $"'{q}'"))}.");
            }

            if (_stopping)
            {
                throw new DispatcherException("The dispatcher is stopping and changes no queue.");
            }

            var work = apply();
            _changedQueues.Add(name);
            info = _scheduler.GetQueue(name)!;
            if (_store is not null)
            {
                durable = _store.AppendAsync(new QueueStateRecord(name, info.Limit, info.Paused, info.Draining));
                _journalRecords++;
            }

            DispatcherLog.QueueChanged(_logger, name, change, info.Limit, info.Paused, info.Draining);
            if (work is not null)
            {
                Apply(work, toStart);
            }

            info = _scheduler.GetQueue(name)!;
        }

        Launch(toStart);
        if (durable is not null)
        {
            await durable.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        return info;
    }
}
