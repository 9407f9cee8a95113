using System.Net;
using System.Security.Claims;

namespace Dispatcher.Protocol;

/// <summary>
/// The protocol state of one client: a WebSocket connection, or one REST request. A transport creates it with what it knows of the
/// client, passes it with every request to <see cref="ProtocolServer"/>, and disposes it when the client is gone (which ends its
/// event subscriptions). Handlers read who is asking from it.
/// </summary>
public sealed class ProtocolConnection : IDisposable
{
    private readonly object _gate = new();
    private readonly HashSet<string> _subscriptions = new(StringComparer.Ordinal);
    private readonly Action<ReadOnlyMemory<byte>>? _events;

    // Never disposed: it has no timer, and a token read after the connection ended must still work.
    private readonly CancellationTokenSource _loginEnded = new();
    private Action<ProtocolConnection>? _disposed;
    private DispatcherEventLog.Cursor? _dispatcherCursor;

    /// <summary>Creates a connection.</summary>
    /// <param name="transport">
    /// A short transport name for logs, such as <c>ws</c> or <c>http</c>; <c>sse</c> names a one-way event stream, whose 401 messages
    /// then ask for an Authorization header rather than in-band login requests.
    /// </param>
    /// <param name="remoteAddress">The client's IP address as text, for login throttling, local login and logs.</param>
    /// <param name="principal">The user of the host's own ASP.NET Core authentication, or <see langword="null"/>.</param>
    /// <param name="events">
    /// Where event frames for this client go (compact UTF-8 JSON text frames), or <see langword="null"/> for a transport without
    /// events (REST). Called on the publisher's thread: queue the frame and return; never block.
    /// </param>
    public ProtocolConnection(string transport, string remoteAddress, ClaimsPrincipal? principal = null, Action<ReadOnlyMemory<byte>>? events = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(transport);
        ArgumentNullException.ThrowIfNull(remoteAddress);
        Transport = transport;
        RemoteAddress = remoteAddress;
        Principal = principal;
        _events = events;
        IsLoopback = IPAddress.TryParse(remoteAddress, out var ip)
            && IPAddress.IsLoopback(ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip);
    }

    /// <summary>Gets the transport name.</summary>
    public string Transport { get; }

    /// <summary>Gets the client's address.</summary>
    public string RemoteAddress { get; }

    /// <summary>Gets a value indicating whether the client connects from this machine (127.0.0.0/8, ::1 or their IPv4-mapped form).</summary>
    public bool IsLoopback { get; }

    /// <summary>Gets the principal of the host's own authentication, or <see langword="null"/>.</summary>
    public ClaimsPrincipal? Principal { get; }

    /// <summary>Gets a value indicating whether the transport delivers events to this client.</summary>
    public bool SupportsEvents => _events is not null;

    /// <summary>Gets the authenticated user, or <see langword="null"/>.</summary>
    public DispatcherUser? User { get; internal set; }

    /// <summary>Gets what the client may do now (<see cref="DispatcherAccess.None"/> until it authenticates).</summary>
    public DispatcherAccess Access => User?.Access ?? DispatcherAccess.None;

    /// <summary>
    /// Gets the shape of the <c>dispatcher</c> events this client asked for in <c>events/subscribe</c>, or <see langword="null"/> for the
    /// server's <see cref="DispatcherProtocolOptions.EventShape"/>.
    /// </summary>
    public DispatcherEventShape? EventShape { get; internal set; }

    /// <summary>Gets the names of the event channels the client is subscribed to.</summary>
    public IReadOnlyCollection<string> Subscriptions
    {
        get
        {
            lock (_gate)
            {
                return [.. _subscriptions];
            }
        }
    }

    /// <summary>
    /// Gets a token that is cancelled when the server ends this client's subscriptions because its login expired or was revoked
    /// (for example by <c>rpc/auth_clear</c> on another connection with the same token). A transport that streams events, such
    /// as Server-Sent Events, ends the stream then.
    /// </summary>
    public CancellationToken LoginEnded => _loginEnded.Token;

    /// <summary>Gets or sets the token the client authenticated with (in-band or Bearer), which must stay valid.</summary>
    internal string? Token { get; set; }

    /// <summary>Gets or sets the shape this client's <c>dispatcher</c> events are sent in (set when it subscribes).</summary>
    internal DispatcherEventShape DispatcherShape { get; set; }

    /// <summary>
    /// Sends the <c>dispatcher</c> events a subscription made with the object form of <c>events/subscribe</c> is owed: with
    /// <c>since</c>, what followed that number (or a <c>gap</c> event when the server no longer holds it); without it, what
    /// happened between the reply and now. Until this has run, such a subscription gets no live events, so that none arrives
    /// before the reply or out of order. Transports that deliver events call it after sending each reply; it returns at once
    /// when nothing is owed.
    /// </summary>
    /// <param name="write">Writes one event frame; it may wait for room (the backlog is bounded by the replay buffer).</param>
    /// <param name="cancellationToken">Stops the catch-up.</param>
    /// <returns>A task that completes when the subscription is live.</returns>
    public async ValueTask CatchUpAsync(Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> write, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(write);
        if (Volatile.Read(ref _dispatcherCursor) is not { IsLive: false } cursor)
        {
            return;
        }

        var shape = DispatcherShape;
        await cursor.CatchUpAsync(async (e, ct) =>
        {
            if (e.FrameFor(shape) is { Length: > 0 } frame)
            {
                await write(frame, ct).ConfigureAwait(false);
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Ends the client's subscriptions.</summary>
    public void Dispose()
    {
        Action<ProtocolConnection>? disposed;
        lock (_gate)
        {
            disposed = _disposed;
            _disposed = null;
        }

        disposed?.Invoke(this);
    }

    internal void SendEvent(ReadOnlyMemory<byte> frame) => _events?.Invoke(frame);

    /// <summary>Replaces the <c>dispatcher</c> subscription's cursor (null ends it).</summary>
    internal void SetDispatcherCursor(DispatcherEventLog.Cursor? cursor) => Interlocked.Exchange(ref _dispatcherCursor, cursor)?.Dispose();

    /// <summary>The login is gone: signal <see cref="LoginEnded"/> and end the subscriptions.</summary>
    internal void EndLogin()
    {
        try
        {
            _loginEnded.Cancel();
        }
        finally
        {
            Dispose();
        }
    }

    internal bool AddSubscription(string channel, Action<ProtocolConnection> onDispose)
    {
        lock (_gate)
        {
            _disposed = onDispose;
            return _subscriptions.Add(channel);
        }
    }

    internal bool RemoveSubscription(string channel)
    {
        lock (_gate)
        {
            return _subscriptions.Remove(channel);
        }
    }

    internal bool IsSubscribed(string channel)
    {
        lock (_gate)
        {
            return _subscriptions.Contains(channel);
        }
    }

    internal string[] ClearSubscriptions()
    {
        lock (_gate)
        {
            var all = _subscriptions.ToArray();
            _subscriptions.Clear();
            return all;
        }
    }
}
