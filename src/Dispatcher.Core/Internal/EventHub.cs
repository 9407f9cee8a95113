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

    public DispatcherSubscription Subscribe(int? capacity = null)
    {
        var subscription = new DispatcherSubscription(capacity ?? _capacity, Remove);
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
