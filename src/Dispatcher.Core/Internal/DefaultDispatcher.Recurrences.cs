using System.Globalization;
using Cronos;
using Dispatcher.Storage;
using Dispatcher.Telemetry;

namespace Dispatcher.Internal;

/// <summary>
/// Recurring jobs: cron expressions (Cronos) in a time zone. The dispatcher's one timer wakes for the earliest of the next delayed
/// job and the next occurrence. Missed runs are coalesced: after downtime a recurrence enqueues one job for the earliest missed
/// occurrence and goes on with the first occurrence after that moment.
/// </summary>
internal sealed partial class DefaultDispatcher
{
    private readonly SortedDictionary<string, RecurrenceState> _recurrences = new(StringComparer.Ordinal);

    public async ValueTask<RecurrenceInfo> AddRecurrenceAsync(Recurrence recurrence, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(recurrence);
        cancellationToken.ThrowIfCancellationRequested();
        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        var state = Parse(recurrence, _time.GetUtcNow(), null);
        Task? durable = null;
        RecurrenceInfo info;
        lock (_gate)
        {
            if (_stopping)
            {
                throw Reject(recurrence.Id, JobRejectionReason.ShuttingDown, "The dispatcher is stopping and accepts no new recurrences.");
            }

            if (!_scheduler.HasQueue(recurrence.Job.Queue))
            {
                throw Reject(recurrence.Id, JobRejectionReason.UnknownQueue,
                    $"Unknown queue '{recurrence.Job.Queue}'; the queues are {string.Join(", ", _scheduler.QueueNames.Select(q => $"'{q}'"))}.");
            }

            _recurrences[recurrence.Id] = state;
            if (_store is not null)
            {
                durable = _store.AppendAsync(new RecurrenceRecord(recurrence, state.CreatedAt, null));
                _journalRecords++;
            }

            info = state.Snapshot();
            ArmTimer();
        }

        if (durable is not null)
        {
            await durable.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        return info;
    }

    public async ValueTask<bool> RemoveRecurrenceAsync(string id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        cancellationToken.ThrowIfCancellationRequested();
        await EnsureStartedAsync(cancellationToken).ConfigureAwait(false);
        Task? durable = null;
        lock (_gate)
        {
            if (!_recurrences.Remove(id))
            {
                return false;
            }

            if (_store is not null)
            {
                durable = _store.AppendAsync(new RecurrenceRemovedRecord(id));
                _journalRecords++;
            }

            ArmTimer();
        }

        if (durable is not null)
        {
            await durable.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        return true;
    }

    public IReadOnlyList<RecurrenceInfo> ListRecurrences()
    {
        lock (_gate)
        {
            return [.. _recurrences.Values.Select(r => r.Snapshot())];
        }
    }

    /// <summary>The job id a recurrence gives the job of an occurrence.</summary>
    internal static string OccurrenceJobId(string recurrenceId, DateTimeOffset occurrence) =>
        recurrenceId + "@" + occurrence.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);

    /// <summary>When the timer must fire next: the earliest delayed job or occurrence. Under the lock.</summary>
    private DateTimeOffset? NextWakeUp()
    {
        var due = _scheduler.NextDue;
        foreach (var r in _recurrences.Values)
        {
            if (r.Next is { } next && (due is null || next < due))
            {
                due = next;
            }
        }

        return due;
    }

    /// <summary>Enqueues one job for each recurrence that is due (one, however many occurrences were missed). Under the lock.</summary>
    private void FireRecurrences(List<Job> toStart)
    {
        var now = _time.GetUtcNow();
        foreach (var r in _recurrences.Values)
        {
            if (r.Next is not { } occurrence || occurrence > now)
            {
                continue;
            }

            var jobId = OccurrenceJobId(r.Recurrence.Id, occurrence);
            try
            {
                var request = r.Recurrence.Job with { Id = jobId };
                Validate(request);
                EnqueueCore(request, toStart, out var durable, out var held);
                if (durable is not null && held is not null)
                {
                    // Nobody awaits it: a failed record rejects the job (logged), nothing else.
                    _ = MadeDurableAsync(held, durable).ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                        TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                }
                DispatcherLog.RecurrenceFired(_logger, r.Recurrence.Id, jobId, occurrence);
            }
            catch (JobRejectedException ex)
            {
                // A queue removed or draining, or the previous run of the same occurrence still held: this occurrence is dropped.
                DispatcherLog.RecurrenceFailed(_logger, r.Recurrence.Id, occurrence, ex);
            }

            // Handled through now: missed occurrences between the due one and now are not made up one by one.
            r.HandledThrough = now > occurrence ? now : occurrence;
            r.LastOccurrence = occurrence;
            r.Next = r.NextAfter(r.HandledThrough.Value);
            Journal(new RecurrenceRecord(r.Recurrence, r.CreatedAt, r.HandledThrough));
        }
    }

    private void AddRecurrenceRecords(List<JobStoreRecord> records)
    {
        foreach (var r in _recurrences.Values)
        {
            records.Add(new RecurrenceRecord(r.Recurrence, r.CreatedAt, r.HandledThrough));
        }
    }

    /// <summary>Brings back recorded recurrences; one that became due while the host was down fires at the next wake-up (at once). Under the lock.</summary>
    private void RestoreRecurrences(IEnumerable<RecurrenceRecord> records, List<Job> toStart)
    {
        _ = toStart;
        foreach (var record in records)
        {
            try
            {
                _recurrences[record.RecurrenceId] = Parse(record.Recurrence, record.CreatedAt, record.LastOccurrence);
            }
            catch (JobRejectedException ex)
            {
                DispatcherLog.RecurrenceFailed(_logger, record.RecurrenceId, record.LastOccurrence ?? record.CreatedAt, ex);
            }
        }
    }

    private static RecurrenceState Parse(Recurrence recurrence, DateTimeOffset createdAt, DateTimeOffset? handledThrough)
    {
        var id = recurrence.Id ?? string.Empty;
        if (string.IsNullOrWhiteSpace(recurrence.Id))
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, "The recurrence id must not be empty.");
        }

        if (recurrence.Job is null)
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Recurrence '{id}' has no job.");
        }

        CronExpression cron;
        try
        {
            var fields = (recurrence.Cron ?? string.Empty).Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
            cron = CronExpression.Parse(recurrence.Cron ?? string.Empty, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
        }
        catch (Exception ex) when (ex is CronFormatException or ArgumentException)
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest,
                $"Recurrence '{id}' has an invalid cron expression '{recurrence.Cron}': {ex.Message} It takes five fields (minute hour day month weekday) or six (seconds first).");
        }

        TimeZoneInfo zone;
        try
        {
            zone = recurrence.TimeZone is { } name ? TimeZoneInfo.FindSystemTimeZoneById(name) : TimeZoneInfo.Utc;
        }
        catch (Exception ex) when (ex is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            throw new JobRejectedException(id, JobRejectionReason.InvalidRequest, $"Recurrence '{id}' names an unknown time zone '{recurrence.TimeZone}'.");
        }

        Validate(recurrence.Job with { Id = OccurrenceJobId(id, createdAt) });
        var state = new RecurrenceState(recurrence, cron, zone, createdAt) { HandledThrough = handledThrough, LastOccurrence = handledThrough };
        state.Next = state.NextAfter(handledThrough ?? createdAt);
        return state;
    }

    private sealed class RecurrenceState(Recurrence recurrence, CronExpression cron, TimeZoneInfo zone, DateTimeOffset createdAt)
    {
        public Recurrence Recurrence { get; } = recurrence;

        public DateTimeOffset CreatedAt { get; } = createdAt;

        public DateTimeOffset? HandledThrough { get; set; }

        public DateTimeOffset? LastOccurrence { get; set; }

        public DateTimeOffset? Next { get; set; }

        public DateTimeOffset? NextAfter(DateTimeOffset time) => cron.GetNextOccurrence(time, zone);

        public RecurrenceInfo Snapshot() => new(Recurrence, Next, LastOccurrence);
    }
}
