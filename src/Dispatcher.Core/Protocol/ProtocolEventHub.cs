using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// The event channels: who is subscribed to what, the last event of each replaying channel, and the fan-out of frames to the
/// connections' event sinks. The <c>dispatcher</c> channel is fed by <see cref="DispatcherEventLog"/> (the numbered events of
/// <see cref="DispatcherEventFeed"/>): each of its subscribers has a cursor there, which lets it resume after the last number it saw.
/// </summary>
internal sealed class ProtocolEventHub : IProtocolEventPublisher, IDisposable
{
    public const string DispatcherChannel = "dispatcher";

    private readonly object _gate = new();
    private readonly Dictionary<string, ChannelState> _channels = new(StringComparer.Ordinal);
    private readonly DispatcherEventLog _log;
    private readonly ProtocolAuthenticator _authenticator;
    private readonly DispatcherEventShape _shape;
    private readonly ILogger _logger;
    private readonly Action<ProtocolConnection> _onDispose;

    public ProtocolEventHub(IEnumerable<ProtocolEventChannel> channels, DispatcherEventLog log, ProtocolAuthenticator authenticator,
        IOptions<DispatcherProtocolOptions> options, ILogger<ProtocolEventHub>? logger = null)
    {
        _shape = options.Value.EventShape;
        _log = log;
        _authenticator = authenticator;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _onDispose = connection => UnsubscribeAll(connection);
        _channels[DispatcherChannel] = new ChannelState(new ProtocolEventChannel(DispatcherChannel, DispatcherAccess.Read, replayLast: false));
        foreach (var channel in channels)
        {
            if (_channels.TryGetValue(channel.Name, out var existing))
            {
                if (existing.Channel.ReadAccess == channel.ReadAccess && existing.Channel.ReplayLast == channel.ReplayLast)
                {
                    continue;
                }

                throw new InvalidOperationException($"The event channel '{channel.Name}' is registered twice with different settings.");
            }

            _channels[channel.Name] = new ChannelState(channel);
        }
    }

    public IReadOnlyCollection<ProtocolEventChannel> Channels => [.. _channels.Values.Select(c => c.Channel)];

    /// <summary>Gets the replay buffer of the <c>dispatcher</c> channel.</summary>
    public DispatcherEventLog Log => _log;

    public void Publish(string channel, JsonObject args)
    {
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(args);
        if (!_channels.TryGetValue(channel, out var state) || channel == DispatcherChannel)
        {
            throw new ArgumentException(channel == DispatcherChannel
                ? "The dispatcher channel carries the dispatcher's own job events; publish on a channel of your own."
                : $"No event channel '{channel}' is registered; register it with AddEventChannel(\"{channel}\").", nameof(channel));
        }

        var frame = Frame(channel, args);
        ProtocolConnection[] subscribers;
        lock (_gate)
        {
            if (state.Channel.ReplayLast)
            {
                state.Last = frame;
            }

            subscribers = state.Subscribers;
        }

        Send(subscribers, frame);
    }

    /// <summary>
    /// Subscribes a connection to each known channel it may read, pushing each replaying channel's last event to it first; unknown
    /// names and channels it may not read are skipped, as the sysadm server skipped unknown names.
    /// </summary>
    /// <param name="connection">The subscriber.</param>
    /// <param name="names">The channel names.</param>
    /// <param name="resume">
    /// For the <c>dispatcher</c> channel: <see langword="null"/> for live events at once (the plain forms of sysadm clients), or where
    /// the subscription starts (the object form); then the events are owed until <see cref="ProtocolConnection.CatchUpAsync"/> runs.
    /// </param>
    /// <returns>The last name that was valid, or <see langword="null"/> when none was.</returns>
    public string? Subscribe(ProtocolConnection connection, IEnumerable<string> names, DispatcherResume? resume = null)
    {
        string? last = null;
        foreach (var name in names)
        {
            if (!_channels.TryGetValue(name, out var state) || connection.Access < state.Channel.ReadAccess)
            {
                continue;
            }

            last = name;
            ReadOnlyMemory<byte>? replay = null;
            bool added;
            lock (_gate)
            {
                added = connection.AddSubscription(name, _onDispose);
                if (added)
                {
                    state.Subscribers = [.. state.Subscribers, connection];
                }

                replay = state.Last;
            }

            if (name == DispatcherChannel)
            {
                connection.DispatcherShape = connection.EventShape ?? _shape;
                if (added || resume is { Since: not null })
                {
                    // A resume on a live subscription starts it again from the number given (the client missed events).
                    connection.SetDispatcherCursor(_log.Subscribe(resume?.Since, resume?.Stream, e => OnDispatcherEvent(connection, e)));
                }
            }

            if (replay is { } frame)
            {
                connection.SendEvent(frame);
            }
        }

        return last;
    }

    /// <summary>Ends a connection's subscriptions to the named channels; returns the last known name, or <see langword="null"/>.</summary>
    public string? Unsubscribe(ProtocolConnection connection, IEnumerable<string> names)
    {
        string? last = null;
        foreach (var name in names)
        {
            if (!_channels.TryGetValue(name, out var state))
            {
                continue;
            }

            last = name;
            lock (_gate)
            {
                if (connection.RemoveSubscription(name))
                {
                    Remove(state, connection);
                }
            }
        }

        return last;
    }

    public void UnsubscribeAll(ProtocolConnection connection)
    {
        lock (_gate)
        {
            foreach (var name in connection.ClearSubscriptions())
            {
                if (_channels.TryGetValue(name, out var state))
                {
                    Remove(state, connection);
                }
            }
        }
    }

    public void Dispose()
    {
        // The connections' cursors end with their connections; the log is the container's.
    }

    /// <summary>Called under the lock.</summary>
    private static void Remove(ChannelState state, ProtocolConnection connection)
    {
        var index = Array.IndexOf(state.Subscribers, connection);
        if (index >= 0)
        {
            state.Subscribers = [.. state.Subscribers.AsSpan(0, index), .. state.Subscribers.AsSpan(index + 1)];
        }

        if (state.Channel.Name == DispatcherChannel)
        {
            connection.SetDispatcherCursor(null);
        }
    }

    /// <summary>Called on the feed's thread, inside the log's lock, for one live subscriber.</summary>
    private void OnDispatcherEvent(ProtocolConnection connection, SequencedEvent e)
    {
        if (e.FrameFor(connection.DispatcherShape) is { Length: > 0 } frame)
        {
            Send(connection, frame);
        }
    }

    private void Send(ProtocolConnection[] subscribers, ReadOnlyMemory<byte> frame)
    {
        foreach (var connection in subscribers)
        {
            Send(connection, frame);
        }
    }

    private void Send(ProtocolConnection connection, ReadOnlyMemory<byte> frame)
    {
        if (!_authenticator.MayReceiveEvents(connection))
        {
            // The token expired or was revoked (auth_clear on another connection): the subscriptions end with it. They are
            // removed off this thread, which may be the feed's, inside the feed's and the log's locks.
            ThreadPool.UnsafeQueueUserWorkItem(static c => c.EndLogin(), connection, preferLocal: false);
            return;
        }

        try
        {
            connection.SendEvent(frame);
        }
        catch (Exception ex)
        {
            HubLog.SinkFailed(_logger, connection.RemoteAddress, ex);
        }
    }

    private static ReadOnlyMemory<byte> Frame(string channel, JsonObject args) =>
        Encoding.UTF8.GetBytes(WireFormat.Envelope("events", channel, string.Empty, args.DeepClone()).ToJsonString(WireFormat.JsonOptions));

    private sealed class ChannelState(ProtocolEventChannel channel)
    {
        public ProtocolEventChannel Channel { get; } = channel;

        public ProtocolConnection[] Subscribers { get; set; } = [];

        public ReadOnlyMemory<byte>? Last { get; set; }
    }
}

/// <summary>Where a <c>dispatcher</c> subscription starts: after <see cref="Since"/> (null: the current head) of <see cref="Stream"/>.</summary>
internal readonly record struct DispatcherResume(long? Since, string? Stream);

internal static partial class HubLog
{
    [LoggerMessage(EventId = 111, EventName = "EventSinkFailed", Level = LogLevel.Error, Message = "The event sink of client {Address} failed")]
    public static partial void SinkFailed(ILogger logger, string address, Exception exception);
}
