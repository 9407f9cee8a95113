namespace Dispatcher;

/// <summary>
/// A recurring job: at each occurrence of a cron expression the dispatcher enqueues a copy of <see cref="Job"/> whose id is the
/// recurrence id, <c>@</c>, and the occurrence in UTC (<c>nightly@20260101T020000Z</c>). A recurrence is its own object: it is
/// listed (<see cref="IDispatcher.ListRecurrences"/>), removed (<see cref="IDispatcher.RemoveRecurrenceAsync"/>) and, with a job
/// store, kept across restarts.
/// </summary>
/// <remarks>
/// Missed runs: when the host was down (or the dispatcher was busy) over one or more occurrences, the recurrence enqueues one job
/// at once for the earliest missed occurrence, and then goes on with the first occurrence after that moment. Occurrences are never
/// made up one by one after downtime.
/// </remarks>
/// <param name="Id">The recurrence id; adding a recurrence with the id of another replaces it.</param>
/// <param name="Cron">A cron expression of five fields (minute hour day-of-month month day-of-week) or six (seconds first), as read by Cronos.</param>
/// <param name="Job">What to enqueue at each occurrence; its <see cref="JobRequest.Id"/> is ignored.</param>
public sealed record Recurrence(string Id, string Cron, JobRequest Job)
{
    /// <summary>Gets the time zone the cron expression is read in: an IANA or Windows id, or <see langword="null"/> for UTC.</summary>
    public string? TimeZone { get; init; }
}

/// <summary>A snapshot of a recurrence, as returned by <see cref="IDispatcher.ListRecurrences"/>.</summary>
public sealed class RecurrenceInfo
{
    internal RecurrenceInfo(Recurrence recurrence, DateTimeOffset? nextOccurrence, DateTimeOffset? lastOccurrence)
    {
        Recurrence = recurrence;
        NextOccurrence = nextOccurrence;
        LastOccurrence = lastOccurrence;
    }

    /// <summary>Gets the recurrence.</summary>
    public Recurrence Recurrence { get; }

    /// <summary>Gets when it next enqueues a job, or <see langword="null"/> if the expression has no later occurrence.</summary>
    public DateTimeOffset? NextOccurrence { get; }

    /// <summary>Gets the occurrence it last enqueued a job for, or <see langword="null"/> if none yet.</summary>
    public DateTimeOffset? LastOccurrence { get; }
}
