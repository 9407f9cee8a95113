using Dispatcher.Events;

namespace Dispatcher.Internal;

/// <summary>Fans events out to subscribers without ever blocking the publisher.</summary>
internal sealed class EventHub
{
    private readonly object _gate = new();
    private readonly int _capacity;
    private DispatcherSubscription[] _subscribers = [];

    public EventHub(int capacity) => _capacity = capacity;

    public bool HasSubscribers => Volatile.Read(ref _subscribers).Length > 0;

    /// <summary>Adds a subscriber.</summary>
    /// <param name="capacity">Its buffer, in events (the hub's default when null).</param>
    /// <param name="holdCommandEvents">
    /// Whether a command's start and end are queued without waking the reader, which gets them, in order, with the next event
    /// of another kind (for the protocol's feed, which makes no frame of them: see <see cref="DispatcherSubscription"/>).
    /// </param>
    public DispatcherSubscription Subscribe(int? capacity = null, bool holdCommandEvents = false)
    {
        var subscription = new DispatcherSubscription(capacity ?? _capacity, Remove, holdCommandEvents);
        lock (_gate)
        {
            _subscribers = [.. _subscribers, subscription];
        }

        return subscription;
    }

    public void Publish(DispatcherEvent e)
    {
        foreach (var subscriber in Volatile.Read(ref _subscribers))
        {
            if (!subscriber.TryPublish(e))
            {
                Remove(subscriber);
            }
        }
    }

    public void CompleteAll()
    {
        DispatcherSubscription[] all;
        lock (_gate)
        {
            all = _subscribers;
            _subscribers = [];
        }

        foreach (var s in all)
        {
            s.Complete();
        }
    }

    private void Remove(DispatcherSubscription subscription)
    {
        lock (_gate)
        {
            var index = Array.IndexOf(_subscribers, subscription);
            if (index >= 0)
            {
                _subscribers = [.. _subscribers.AsSpan(0, index), .. _subscribers.AsSpan(index + 1)];
            }
        }
    }
}
