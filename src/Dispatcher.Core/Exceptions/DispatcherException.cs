namespace Dispatcher;

/// <summary>The base of the exceptions the dispatcher throws for requests it cannot carry out.</summary>
public class DispatcherException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DispatcherException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What was wrong.</param>
    public DispatcherException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    /// <param name="message">What was wrong.</param>
    /// <param name="innerException">The cause.</param>
    public DispatcherException(string message, Exception innerException) : base(message, innerException)
    {
    }
}

/// <summary>Why a job was not accepted.</summary>
public enum JobRejectionReason
{
    /// <summary>The request is malformed (empty id, an empty command, a negative timeout...).</summary>
    InvalidRequest,

    /// <summary>The request has no commands.</summary>
    NoCommands,

    /// <summary>A job with the same id is already pending or running.</summary>
    DuplicateId,

    /// <summary>The named queue does not exist.</summary>
    UnknownQueue,

    /// <summary>The dispatcher is stopping and accepts no new jobs.</summary>
    ShuttingDown,

    /// <summary>The job could not be recorded in the job store (the storage is full or read-only, or the store stopped); it did not run.</summary>
    StorageFailed,

    /// <summary>The queue is draining (<see cref="IDispatcher.DrainQueueAsync"/>) and accepts no new jobs.</summary>
    QueueDraining,

    /// <summary>A job named in <see cref="JobRequest.After"/> is not pending, running or retained (or is the job itself).</summary>
    UnknownDependency,
}

/// <summary>Thrown when a queue operation names a queue that does not exist.</summary>
public sealed class QueueNotFoundException : DispatcherException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="queue">The queue name.</param>
    /// <param name="message">What was wrong.</param>
    public QueueNotFoundException(string queue, string message)
        : base(message)
    {
        Queue = queue;
    }

    /// <summary>Gets the queue name that was not found.</summary>
    public string Queue { get; }
}

/// <summary>Thrown when a job is not accepted; nothing was changed.</summary>
public sealed class JobRejectedException : DispatcherException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="jobId">The id of the rejected job.</param>
    /// <param name="reason">Why it was rejected.</param>
    /// <param name="message">A message that says what was wrong.</param>
    public JobRejectedException(string jobId, JobRejectionReason reason, string message) : base(message)
    {
        JobId = jobId;
        Reason = reason;
    }

    /// <summary>Gets the id of the rejected job.</summary>
    public string JobId { get; }

    /// <summary>Gets why the job was rejected.</summary>
    public JobRejectionReason Reason { get; }
}

/// <summary>Thrown when a job id is neither pending, running nor among the retained finished jobs.</summary>
public sealed class JobNotFoundException : DispatcherException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="jobId">The id that was not found.</param>
    public JobNotFoundException(string jobId)
        : base($"No job with id '{jobId}' is pending, running or retained as finished.") => JobId = jobId;

    /// <summary>Gets the id that was not found.</summary>
    public string JobId { get; }
}

/// <summary>
/// Ends an event stream from <see cref="IDispatcher.Subscribe"/> whose reader fell behind by more than
/// <see cref="DispatcherOptions.EventBufferCapacity"/> events. Events after the ones already buffered were not delivered.
/// </summary>
public sealed class EventStreamOverflowException : DispatcherException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="capacity">The buffer capacity that was exceeded.</param>
    public EventStreamOverflowException(int capacity)
        : base($"The event subscriber fell behind by more than {capacity} events and was unsubscribed.") => Capacity = capacity;

    /// <summary>Gets the buffer capacity that was exceeded.</summary>
    public int Capacity { get; }
}
