namespace Dispatcher;

/// <summary>A snapshot of one queue, as returned by <see cref="IDispatcher.GetQueues"/>.</summary>
public sealed class QueueInfo
{
    internal QueueInfo(string name, int limit, bool paused, bool draining, int running, int pending)
    {
        Name = name;
        Limit = limit;
        Paused = paused;
        Draining = draining;
        Running = running;
        Pending = pending;
    }

    /// <summary>Gets the queue's name.</summary>
    public string Name { get; }

    /// <summary>Gets how many of the queue's jobs may run at once; 0 means no limit.</summary>
    public int Limit { get; }

    /// <summary>Gets whether the queue is paused: its running jobs go on, its pending jobs do not start.</summary>
    public bool Paused { get; }

    /// <summary>Gets whether the queue is draining: it refuses new jobs and runs the ones it holds.</summary>
    public bool Draining { get; }

    /// <summary>Gets whether the queue is draining and holds no job any more.</summary>
    public bool Drained => Draining && Running == 0 && Pending == 0;

    /// <summary>Gets how many of the queue's jobs are running.</summary>
    public int Running { get; }

    /// <summary>
    /// Gets how many of the queue's jobs are pending: ready to start, or waiting for their start time or for the jobs they
    /// depend on.
    /// </summary>
    public int Pending { get; }
}
