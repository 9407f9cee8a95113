using System.Threading.Channels;

namespace Dispatcher.Events;

/// <summary>A subscription to dispatcher events, from <see cref="IDispatcher.Subscribe"/>. Dispose it to unsubscribe.</summary>
public sealed class DispatcherSubscription : IDisposable
{
    /// <summary>The most command events held unseen before they are handed over anyway.</summary>
    private const int MaxHeld = 256;

    private readonly Action<DispatcherSubscription> _unsubscribe;
    private readonly Channel<DispatcherEvent> _channel;

    // Command events queued without waking the reader (null: every event wakes it). Also the lock of the hand-off, so that
    // held and new events enter the channel in the order they were published.
    private readonly List<DispatcherEvent>? _held;

    internal DispatcherSubscription(int capacity, Action<DispatcherSubscription> unsubscribe, bool holdCommandEvents = false)
    {
        Capacity = capacity;
        _unsubscribe = unsubscribe;
        _channel = Channel.CreateBounded<DispatcherEvent>(new BoundedChannelOptions(capacity)
        {
            SingleReader = false,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _held = holdCommandEvents ? [] : null;
    }

    /// <summary>
    /// Gets the events, in the order they happened. The reader completes when the subscription is disposed, when the dispatcher is
    /// disposed, or with <see cref="EventStreamOverflowException"/> after the subscriber fell too far behind.
    /// </summary>
    public ChannelReader<DispatcherEvent> Events => _channel.Reader;

    internal int Capacity { get; }

    /// <summary>Reads the events as an async stream until the subscription ends.</summary>
    /// <param name="cancellationToken">Stops the reading (not the subscription).</param>
    /// <returns>The events.</returns>
    public IAsyncEnumerable<DispatcherEvent> ReadAllAsync(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAllAsync(cancellationToken);

    /// <summary>Unsubscribes; the reader completes after the events already buffered.</summary>
    public void Dispose()
    {
        _unsubscribe(this);
        _channel.Writer.TryComplete();
    }

    /// <summary>Offers an event; false (and the subscription is ended with an overflow) when the buffer is full.</summary>
    /// <remarks>
    /// A holding subscription (the protocol's feed) queues a command's start and end without a hand-off: each write that finds
    /// the reader waiting wakes a thread-pool thread, and on a serial queue the publisher is the child I/O thread, on the
    /// jobs' critical path (benchmarks/ANALYSIS.md, userpath5). They go into the channel, in order, just before the next event
    /// of another kind (a job's end always follows), or when <see cref="MaxHeld"/> of them wait, or at <see cref="FlushHeld"/>.
    /// </remarks>
    internal bool TryPublish(DispatcherEvent e)
    {
        if (_held is null)
        {
            return TryWrite(e);
        }

        lock (_held)
        {
            if (e is JobCommandStartedEvent or JobCommandFinishedEvent && _held.Count < MaxHeld)
            {
                _held.Add(e);
                return true;
            }

            return FlushHeldLocked() && TryWrite(e);
        }
    }

    /// <summary>Hands the held events over now (a holding subscription's reader that needs to see everything so far).</summary>
    /// <returns>False when the buffer overflowed (the subscription has ended).</returns>
    internal bool FlushHeld()
    {
        if (_held is null)
        {
            return true;
        }

        lock (_held)
        {
            return FlushHeldLocked();
        }
    }

    internal void Complete()
    {
        FlushHeld();
        _channel.Writer.TryComplete();
    }

    private bool FlushHeldLocked()
    {
        var ok = true;
        foreach (var held in _held!)
        {
            if (!(ok = TryWrite(held)))
            {
                break;
            }
        }

        _held.Clear();
        return ok;
    }

    private bool TryWrite(DispatcherEvent e)
    {
        if (_channel.Writer.TryWrite(e))
        {
            return true;
        }

        _channel.Writer.TryComplete(new EventStreamOverflowException(Capacity));
        return false;
    }
}
