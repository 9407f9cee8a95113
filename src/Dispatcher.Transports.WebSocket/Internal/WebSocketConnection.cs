using System.Buffers;
using System.Net.WebSockets;
using System.Security.Claims;
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
    private readonly ProtocolConnection _session;
    private readonly ProtocolServer _handler;
    private readonly WebSocketTransportOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Channel<Outgoing> _send;
    private readonly CancellationTokenSource _abort = new();
    private readonly CancellationToken _stopping;
    private long _queuedBytes;
    private int _closing;
    private Outgoing? _closeFrame;

    public WebSocketConnection(System.Net.WebSockets.WebSocket socket, CorkingStream? stream, string remoteAddress, ClaimsPrincipal? user,
        ProtocolServer handler, WebSocketTransportOptions options, TimeProvider time, ILogger logger, CancellationToken stopping = default)
    {
        _stopping = stopping;
        _socket = socket;
        _stream = stream;
        _session = new ProtocolConnection("ws", remoteAddress, user, OnEvent);
        _handler = handler;
        _options = options;
        _time = time;
        _logger = logger;
        _send = Channel.CreateBounded<Outgoing>(new BoundedChannelOptions(options.SendQueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public void Dispose()
    {
        _session.Dispose();
        _abort.Dispose();
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _abort.Token);
        var token = linked.Token;
        using var idle = _time.CreateTimer(_ => Close(WebSocketCloseStatus.NormalClosure, "Idle timeout"), null, _options.IdleTimeout, Timeout.InfiniteTimeSpan);
        Log.Connected(_logger, _session.RemoteAddress);

        // The host is stopping: say so at once (1001) rather than keep the host waiting for the client to leave.
        using var stop = _stopping.Register(() => Close(WebSocketCloseStatus.EndpointUnavailable, "The server is stopping", StopCloseTimeout));
        var sending = SendLoopAsync(token);
        try
        {
            await ReceiveLoopAsync(idle, token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException or ChannelClosedException)
        {
            // The client went away, or the connection was aborted, or closed while a reply waited for room: nothing to answer.
            Log.Aborted(_logger, _session.RemoteAddress, ex);
        }
        finally
        {
            _session.Dispose();
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
                var reply = result.MessageType == WebSocketMessageType.Binary
                    ? ProtocolResponse.Error(ProtocolErrorCode.BadRequest, "Binary frames are not supported: send each request as one JSON text frame.")
                    : await _handler.HandleMessageAsync(_session, message.WrittenMemory, token).ConfigureAwait(false);
                message.ResetWrittenCount();
                if (message.Capacity > 64 * 1024)
                {
                    message = new ArrayBufferWriter<byte>(4096);
                }

                var frame = reply.ToFrame();
                if (!Reserve(frame.Length))
                {
                    continue;
                }

                // A full queue (by frame count) holds this loop, and so the client's further requests, until the client reads.
                await _send.Writer.WriteAsync(new Outgoing(frame), token).ConfigureAwait(false);

                // A resumed subscription (events/subscribe with "since") sends what the client missed after the reply. The backlog
                // waits for room like a reply (it holds this loop, not memory: the frames are the replay buffer's own); it counts
                // towards SendQueueBytes but is never refused: DispatcherProtocolOptions.EventReplayBytes bounds it.
                await _session.CatchUpAsync(async (e, ct) =>
                {
                    if (Volatile.Read(ref _closing) == 0)
                    {
                        Interlocked.Add(ref _queuedBytes, e.Length);
                        await _send.Writer.WriteAsync(new Outgoing(e, IsEvent: true), ct).ConfigureAwait(false);
                    }
                }, token).ConfigureAwait(false);
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

    /// <summary>
    /// Counts a frame against <see cref="WebSocketTransportOptions.SendQueueBytes"/>, which bounds replies and events together. A
    /// client that lets more pile up (pipelined requests it never reads the answers to, or events) is disconnected. One frame is
    /// always let through into an empty queue, so a single reply larger than the limit still goes out.
    /// </summary>
    /// <remarks>
    /// The guarantee is a disconnect, not backpressure: a reply is counted here before it can wait for a slot in the queue, so
    /// whatever a client does not read, the server holds at most this many bytes of queued frames for it, plus the one frame the
    /// send loop is writing (uncounted from the moment it is dequeued) and at most 64 KB held back by <see cref="CorkingStream"/>.
    /// What the kernel's socket buffers absorb (megabytes with autotuning) is not counted: a client whose buffers still take the
    /// replies is, as far as the server can tell, reading them. Measured with 16 KB/4 KB socket buffers and a 512 KiB limit:
    /// a client that read nothing received 13 list replies (612 KB) after the server gave up on it, out of 400 it asked for.
    /// </remarks>
    private bool Reserve(int bytes)
    {
        var queued = Interlocked.Add(ref _queuedBytes, bytes);
        if (queued <= _options.SendQueueBytes || queued == bytes)
        {
            return true;
        }

        Interlocked.Add(ref _queuedBytes, -bytes);
        Log.SlowClient(_logger, _session.RemoteAddress, $"{_options.SendQueueBytes} bytes");
        Close(WebSocketCloseStatus.PolicyViolation, $"Send queue over {_options.SendQueueBytes} bytes: the client is not reading its messages");
        return false;
    }

    /// <summary>Called on the publisher's thread: queue the frame, or disconnect a client that lets its queue fill up.</summary>
    private void OnEvent(ReadOnlyMemory<byte> frame)
    {
        if (Volatile.Read(ref _closing) != 0)
        {
            return;
        }

        if (!Reserve(frame.Length))
        {
            return;
        }

        if (!_send.Writer.TryWrite(new Outgoing(frame, IsEvent: true)))
        {
            Interlocked.Add(ref _queuedBytes, -frame.Length);
            Log.SlowClient(_logger, _session.RemoteAddress, $"{_options.SendQueueCapacity} frames");
            Close(WebSocketCloseStatus.PolicyViolation, $"Send queue over {_options.SendQueueCapacity} frames: the client is not reading its messages");
        }
    }

    /// <summary>How long a client gets to answer the close frame when the host stops (the host's stop must not wait on it).</summary>
    private static readonly TimeSpan StopCloseTimeout = TimeSpan.FromSeconds(1);

    /// <summary>Starts the server's side of the close handshake once: the replies already queued go out, then the close frame; queued events are dropped.</summary>
    private void Close(WebSocketCloseStatus status, string reason, TimeSpan? timeout = null)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        _session.Dispose();
        _closeFrame = new Outgoing(ReadOnlyMemory<byte>.Empty, CloseStatus: status, CloseReason: reason);
        _send.Writer.TryComplete();

        // Whatever happens to the handshake, the connection ends within the close timeout.
        try
        {
            _abort.CancelAfter(timeout is { } t && t < _options.CloseTimeout ? t : _options.CloseTimeout);
        }
        catch (ObjectDisposedException)
        {
            // The connection already ended.
        }
    }

    private async Task SendLoopAsync(CancellationToken token)
    {
        while (await _send.Reader.WaitToReadAsync(token).ConfigureAwait(false))
        {
            while (_send.Reader.TryRead(out var item))
            {
                Interlocked.Add(ref _queuedBytes, -item.Data.Length);
                if (item.IsEvent && Volatile.Read(ref _closing) != 0)
                {
                    continue;
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

    private readonly record struct Outgoing(ReadOnlyMemory<byte> Data, bool IsEvent = false, WebSocketCloseStatus CloseStatus = default, string? CloseReason = null);

    private static partial class Log
    {
        [LoggerMessage(EventId = 301, EventName = "WebSocketConnected", Level = LogLevel.Debug, Message = "WebSocket client {Address} connected")]
        public static partial void Connected(ILogger logger, string address);

        [LoggerMessage(EventId = 302, EventName = "WebSocketDisconnected", Level = LogLevel.Debug, Message = "WebSocket client {Address} disconnected ({Status} {Reason})")]
        public static partial void Disconnected(ILogger logger, string address, string status, string reason);

        [LoggerMessage(EventId = 304, EventName = "WebSocketAborted", Level = LogLevel.Debug, Message = "WebSocket client {Address}: the connection ended abruptly")]
        public static partial void Aborted(ILogger logger, string address, Exception exception);

        [LoggerMessage(EventId = 303, EventName = "WebSocketSlowClient", Level = LogLevel.Warning, Message = "WebSocket client {Address} let more than {Limit} pile up unread; disconnecting it")]
        public static partial void SlowClient(ILogger logger, string address, string limit);
    }
}
