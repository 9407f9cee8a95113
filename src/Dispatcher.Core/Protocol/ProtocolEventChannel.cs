namespace Dispatcher.Protocol;

/// <summary>
/// A named stream of events that clients subscribe to with <c>events/subscribe</c> (for example <c>system-state</c>). Frames are
/// <c>{"namespace": "events", "name": CHANNEL, "id": "", "args": {...}}</c>. Register channels with <c>AddEventChannel</c> and
/// publish on them with <see cref="IProtocolEventPublisher"/>; the built-in <c>dispatcher</c> channel carries the job events.
/// </summary>
public sealed class ProtocolEventChannel
{
    /// <summary>Creates a channel.</summary>
    /// <param name="name">The channel name, matched exactly (clients use the lower-case names).</param>
    /// <param name="readAccess">The access a connection needs to subscribe (<see cref="DispatcherAccess.Read"/> or <see cref="DispatcherAccess.Full"/>).</param>
    /// <param name="replayLast">Whether a new subscriber first gets the channel's last event, as sysadm's <c>system-state</c> did.</param>
    public ProtocolEventChannel(string name, DispatcherAccess readAccess = DispatcherAccess.Read, bool replayLast = true)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (readAccess is not (DispatcherAccess.Read or DispatcherAccess.Full))
        {
            throw new ArgumentOutOfRangeException(nameof(readAccess), readAccess, "A channel is read with Read or Full access.");
        }

        Name = name;
        ReadAccess = readAccess;
        ReplayLast = replayLast;
    }

    /// <summary>Gets the channel name.</summary>
    public string Name { get; }

    /// <summary>Gets the access a connection needs to subscribe.</summary>
    public DispatcherAccess ReadAccess { get; }

    /// <summary>Gets a value indicating whether a new subscriber first gets the last event.</summary>
    public bool ReplayLast { get; }

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>Publishes events on the host's channels. Resolve it from dependency injection.</summary>
public interface IProtocolEventPublisher
{
    /// <summary>
    /// Sends an event to every connection subscribed to <paramref name="channel"/> (and keeps it for replay when the channel says so).
    /// The args are serialized at once; later changes to <paramref name="args"/> have no effect. Never blocks on a client.
    /// </summary>
    /// <param name="channel">A registered channel's name.</param>
    /// <param name="args">The event's <c>args</c>.</param>
    /// <exception cref="ArgumentException">No channel of that name is registered.</exception>
    void Publish(string channel, System.Text.Json.Nodes.JsonObject args);
}
