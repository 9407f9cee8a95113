using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// The event channels: who is subscribed to what, the last event of each replaying channel, and the fan-out of frames to the
/// connections' event sinks. The <c>dispatcher</c> channel is fed by <see cref="DispatcherEventFeed"/>, which the hub listens to
/// only while that channel has subscribers.
/// </summary>
internal sealed class ProtocolEventHub : IProtocolEventPublisher, IDisposable
{
    public const string DispatcherChannel = "dispatcher";

    private readonly object _gate = new();
    private readonly Dictionary<string, ChannelState> _channels = new(StringComparer.Ordinal);
    private readonly DispatcherEventFeed _feed;
    private readonly ProtocolAuthenticator _authenticator;
    private readonly DispatcherEventShape _shape;
    private readonly ILogger _logger;
    private readonly Action<ProtocolConnection> _onDispose;
    private IDisposable? _feedRegistration;

    public ProtocolEventHub(IEnumerable<ProtocolEventChannel> channels, DispatcherEventFeed feed, ProtocolAuthenticator authenticator,
        IOptions<DispatcherProtocolOptions> options, ILogger<ProtocolEventHub>? logger = null)
    {
        _shape = options.Value.EventShape;
        _feed = feed;
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
    /// <returns>The last name that was valid, or <see langword="null"/> when none was.</returns>
    public string? Subscribe(ProtocolConnection connection, IEnumerable<string> names)
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
            var startFeed = false;
            lock (_gate)
            {
                if (connection.AddSubscription(name, _onDispose))
                {
                    state.Subscribers = [.. state.Subscribers, connection];
                    startFeed = name == DispatcherChannel && _feedRegistration is null;
                }

                replay = state.Last;
            }

            if (replay is { } frame)
            {
                connection.SendEvent(frame);
            }

            if (startFeed)
            {
                StartFeed();
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
        lock (_gate)
        {
            _feedRegistration?.Dispose();
            _feedRegistration = null;
        }
    }

    /// <summary>Called under the lock.</summary>
    private void Remove(ChannelState state, ProtocolConnection connection)
    {
        var index = Array.IndexOf(state.Subscribers, connection);
        if (index >= 0)
        {
            state.Subscribers = [.. state.Subscribers.AsSpan(0, index), .. state.Subscribers.AsSpan(index + 1)];
        }

        if (state.Channel.Name == DispatcherChannel && state.Subscribers.Length == 0)
        {
            _feedRegistration?.Dispose();
            _feedRegistration = null;
        }
    }

    private void StartFeed()
    {
        var registration = _feed.Listen(OnDispatcherEvent);
        lock (_gate)
        {
            if (_feedRegistration is null && _channels[DispatcherChannel].Subscribers.Length > 0)
            {
                _feedRegistration = registration;
                return;
            }
        }

        registration.Dispose();
    }

    private void OnDispatcherEvent(DispatcherWireEvent e)
    {
        ProtocolConnection[] subscribers;
        lock (_gate)
        {
            subscribers = _channels[DispatcherChannel].Subscribers;
        }

        Send(subscribers, e.Frame, e);
    }

    private void Send(ProtocolConnection[] subscribers, ReadOnlyMemory<byte> frame, DispatcherWireEvent? job = null)
    {
        foreach (var connection in subscribers)
        {
            if (job is not null)
            {
                if (job.GetFrame(connection.EventShape ?? _shape) is not { Length: > 0 } shaped)
                {
                    continue;
                }

                frame = shaped;
            }

            if (!_authenticator.MayReceiveEvents(connection))
            {
                // The token expired or was revoked (auth_clear on another connection): the subscriptions end with it. They are
                // removed off this thread, which may be the feed's, inside the feed's lock.
                ThreadPool.UnsafeQueueUserWorkItem(static c => c.Dispose(), connection, preferLocal: false);
                continue;
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

internal static partial class HubLog
{
    [LoggerMessage(EventId = 111, EventName = "EventSinkFailed", Level = LogLevel.Error, Message = "The event sink of client {Address} failed")]
    public static partial void SinkFailed(ILogger logger, string address, Exception exception);
}
