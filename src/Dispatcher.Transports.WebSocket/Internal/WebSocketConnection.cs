using System.Buffers;
using System.Net.WebSockets;
using System.Threading.Channels;
using Dispatcher.Protocol;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Transports.WebSocket.Internal;

/// <summary>
/// One client connection: a receive loop that handles requests in order, and a send loop that drains a bounded queue, so replies
/// and events never interleave inside a frame and a client that stops reading cannot make the server wait.
/// </summary>
internal sealed partial class WebSocketConnection : IDisposable
{
    private readonly System.Net.WebSockets.WebSocket _socket;
    private readonly CorkingStream? _stream;
    private readonly ProtocolSession _session;
    private readonly ProtocolHandler _handler;
    private readonly DispatcherEventFeed _feed;
    private readonly WebSocketTransportOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Channel<Outgoing> _send;
    private readonly CancellationTokenSource _abort = new();
    private long _queuedEventBytes;
    private IDisposable? _feedRegistration;
    private int _closing;
    private Outgoing? _closeFrame;

    public WebSocketConnection(System.Net.WebSockets.WebSocket socket, CorkingStream? stream, ProtocolSession session, ProtocolHandler handler, DispatcherEventFeed feed,
        WebSocketTransportOptions options, TimeProvider time, ILogger logger)
    {
        _socket = socket;
        _stream = stream;
        _session = session;
        _handler = handler;
        _feed = feed;
        _options = options;
        _time = time;
        _logger = logger;
        _send = Channel.CreateBounded<Outgoing>(new BoundedChannelOptions(options.SendQueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public void Dispose() => _abort.Dispose();

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _abort.Token);
        var token = linked.Token;
        using var idle = _time.CreateTimer(_ => Close(WebSocketCloseStatus.NormalClosure, "Idle timeout"), null, _options.IdleTimeout, Timeout.InfiniteTimeSpan);
        Log.Connected(_logger, _session.RemoteAddress);
        var sending = SendLoopAsync(token);
        try
        {
            await ReceiveLoopAsync(idle, token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException)
        {
            // The client went away, or the connection was aborted: nothing to answer.
            Log.Aborted(_logger, _session.RemoteAddress, ex);
        }
        finally
        {
            _feedRegistration?.Dispose();
            _send.Writer.TryComplete();
            try
            {
                // Let the replies already queued and the close frame go out, but not for longer than the close timeout.
                await sending.WaitAsync(_options.CloseTimeout, _time, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException or TimeoutException)
            {
                Log.Aborted(_logger, _session.RemoteAddress, ex);
                await _abort.CancelAsync().ConfigureAwait(false);
            }

            Log.Disconnected(_logger, _session.RemoteAddress, _socket.CloseStatus?.ToString() ?? "aborted", _socket.CloseStatusDescription ?? string.Empty);
        }
    }

    private async Task ReceiveLoopAsync(ITimer idle, CancellationToken token)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        var message = new ArrayBufferWriter<byte>(4096);
        var oversize = false;
        try
        {
            while (true)
            {
                var result = await _socket.ReceiveAsync(buffer.AsMemory(), token).ConfigureAwait(false);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    Close(WebSocketCloseStatus.NormalClosure, string.Empty);
                    return;
                }

                if (Volatile.Read(ref _closing) != 0)
                {
                    // The server has sent its close frame: discard whatever arrives until the client answers it.
                    continue;
                }

                if (!oversize && message.WrittenCount + result.Count > _options.MaxMessageBytes)
                {
                    oversize = true;
                    Close(WebSocketCloseStatus.MessageTooBig, $"Message larger than {_options.MaxMessageBytes} bytes");
                    continue;
                }

                buffer.AsSpan(0, result.Count).CopyTo(message.GetSpan(result.Count));
                message.Advance(result.Count);
                if (!result.EndOfMessage)
                {
                    continue;
                }

                idle.Change(_options.IdleTimeout, Timeout.InfiniteTimeSpan);
                ProtocolReply reply = result.MessageType == WebSocketMessageType.Binary
                    ? ProtocolHandler.Error(null, 400, "Binary frames are not supported: send each request as one JSON text frame.")
                    : await _handler.HandleMessageAsync(_session, message.WrittenMemory, token).ConfigureAwait(false);
                message.ResetWrittenCount();
                if (message.Capacity > 64 * 1024)
                {
                    message = new ArrayBufferWriter<byte>(4096);
                }

                await _send.Writer.WriteAsync(new Outgoing(reply.ToFrame(), IsEvent: false), token).ConfigureAwait(false);
                UpdateSubscription();
                if (reply.CloseReason is { } reason)
                {
                    Close(WebSocketCloseStatus.PolicyViolation, reason);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void UpdateSubscription()
    {
        if (_session.EventsSubscribed && _feedRegistration is null)
        {
            _feedRegistration = _feed.Listen(OnEvent);
        }
        else if (!_session.EventsSubscribed && _feedRegistration is not null)
        {
            _feedRegistration.Dispose();
            _feedRegistration = null;
        }
    }

    /// <summary>Called on the feed's thread: queue the frame, or disconnect a client that lets its queue fill up.</summary>
    private void OnEvent(DispatcherWireEvent e)
    {
        if (Volatile.Read(ref _closing) != 0 || !_session.EventsSubscribed)
        {
            return;
        }

        var frame = e.Frame;
        if (Interlocked.Add(ref _queuedEventBytes, frame.Length) > _options.SendQueueBytes || !_send.Writer.TryWrite(new Outgoing(frame, IsEvent: true)))
        {
            Log.SlowClient(_logger, _session.RemoteAddress, _options.SendQueueCapacity);
            Close(WebSocketCloseStatus.PolicyViolation, "Send queue full: the client is not reading its messages");
        }
    }

    /// <summary>Starts the server's side of the close handshake once: the close frame goes out before anything still queued.</summary>
    private void Close(WebSocketCloseStatus status, string reason)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        _feedRegistration?.Dispose();
        _closeFrame = new Outgoing(ReadOnlyMemory<byte>.Empty, IsEvent: false, CloseStatus: status, CloseReason: reason);
        _send.Writer.TryComplete();

        // Whatever happens to the handshake, the connection ends within the close timeout.
        _abort.CancelAfter(_options.CloseTimeout);
    }

    private async Task SendLoopAsync(CancellationToken token)
    {
        while (await _send.Reader.WaitToReadAsync(token).ConfigureAwait(false))
        {
            while (_send.Reader.TryRead(out var item))
            {
                if (Volatile.Read(ref _closing) != 0 && item.IsEvent)
                {
                    continue;
                }

                if (item.IsEvent)
                {
                    Interlocked.Add(ref _queuedEventBytes, -item.Data.Length);
                }

                if (_stream is not null)
                {
                    // More frames are queued: hold this one back and send them together.
                    _stream.Corked = _send.Reader.Count > 0;
                }

                await _socket.SendAsync(item.Data, WebSocketMessageType.Text, endOfMessage: true, token).ConfigureAwait(false);
            }

            if (_stream is not null)
            {
                await _stream.FlushPendingAsync(token).ConfigureAwait(false);
            }
        }

        if (_closeFrame is { } close && _socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
        {
            await _socket.CloseOutputAsync(close.CloseStatus, close.CloseReason, token).ConfigureAwait(false);
        }
    }

    private readonly record struct Outgoing(ReadOnlyMemory<byte> Data, bool IsEvent, WebSocketCloseStatus CloseStatus = default, string? CloseReason = null);

    private static partial class Log
    {
        [LoggerMessage(EventId = 301, EventName = "WebSocketConnected", Level = LogLevel.Debug, Message = "WebSocket client {Address} connected")]
        public static partial void Connected(ILogger logger, string address);

        [LoggerMessage(EventId = 302, EventName = "WebSocketDisconnected", Level = LogLevel.Debug, Message = "WebSocket client {Address} disconnected ({Status} {Reason})")]
        public static partial void Disconnected(ILogger logger, string address, string status, string reason);

        [LoggerMessage(EventId = 304, EventName = "WebSocketAborted", Level = LogLevel.Debug, Message = "WebSocket client {Address}: the connection ended abruptly")]
        public static partial void Aborted(ILogger logger, string address, Exception exception);

        [LoggerMessage(EventId = 303, EventName = "WebSocketSlowClient", Level = LogLevel.Warning, Message = "WebSocket client {Address} let more than {Capacity} frames pile up; disconnecting it")]
        public static partial void SlowClient(ILogger logger, string address, int capacity);
    }
}
