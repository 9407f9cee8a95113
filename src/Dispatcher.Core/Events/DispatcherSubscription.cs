using System.Threading.Channels;

namespace Dispatcher.Events;

/// <summary>A subscription to dispatcher events, from <see cref="IDispatcher.Subscribe"/>. Dispose it to unsubscribe.</summary>
public sealed class DispatcherSubscription : IDisposable
{
    private readonly Action<DispatcherSubscription> _unsubscribe;
    private readonly Channel<DispatcherEvent> _channel;

    internal DispatcherSubscription(int capacity, Action<DispatcherSubscription> unsubscribe)
    {
        Capacity = capacity;
        _unsubscribe = unsubscribe;
        _channel = Channel.CreateBounded<DispatcherEvent>(new BoundedChannelOptions(capacity)
        {
            SingleReader = false,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
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
    internal bool TryPublish(DispatcherEvent e)
    {
        if (_channel.Writer.TryWrite(e))
        {
            return true;
        }

        _channel.Writer.TryComplete(new EventStreamOverflowException(Capacity));
        return false;
    }

    internal void Complete() => _channel.Writer.TryComplete();
}
