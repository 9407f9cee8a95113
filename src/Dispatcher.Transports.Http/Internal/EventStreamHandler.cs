using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using System.Threading.Channels;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.Http.Internal;

/// <summary>
/// <c>GET /events/dispatcher</c>: the <c>events/dispatcher</c> stream as Server-Sent Events. Each event is
/// <c>id: SEQ</c>, <c>event: dispatcher</c> and <c>data:</c> the same JSON frame a WebSocket subscriber gets. A reader resumes
/// with <c>Last-Event-ID</c> (or <c>?since=SEQ</c>, with <c>&amp;stream=ID</c> when it knows the stream).
/// </summary>
internal sealed partial class EventStreamHandler(HttpRequestHandler rest, ProtocolHandler protocol, DispatcherEventLog log,
    IOptions<HttpTransportOptions> options, TimeProvider time, ILogger<EventStreamHandler>? logger = null)
{
    private static readonly byte[] EventPrefix = "event: dispatcher\ndata: "u8.ToArray();
    private static readonly byte[] Heartbeat = ": heartbeat\n\n"u8.ToArray();
    private readonly HttpTransportOptions _options = options.Value;
    private readonly ProtocolHandler _protocol = protocol;
    private readonly DispatcherEventLog _log = log;
    private readonly TimeProvider _time = time;
    private readonly ILogger _logger = (ILogger?)logger ?? NullLogger.Instance;

    public async Task HandleAsync(HttpContext context)
    {
        var address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var session = new ProtocolSession("http", address, context.User, supportsEvents: false);
        var ct = context.RequestAborted;
        if (await rest.AuthenticateAsync(context, session, ct) is { } denied)
        {
            await HttpRequestHandler.WriteAsync(context, denied);
            return;
        }

        if (_protocol.Access(session) == DispatcherAccess.None)
        {
            await HttpRequestHandler.WriteAsync(context, ProtocolHandler.Error(null, 401,
                "Not authenticated: send an Authorization header, Basic with a user name and password, or Bearer with a token from rpc/auth."));
            return;
        }

        if (!TryGetSince(context.Request, out var since, out var problem))
        {
            await HttpRequestHandler.WriteAsync(context, ProtocolHandler.Error(null, 400, problem));
            return;
        }

        var response = context.Response;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(ct);

        using var stream = new Stream(this, session, context);
        await stream.RunAsync(since, context.Request.Query["stream"].ToString() is { Length: > 0 } s ? s : null, ct);
    }

    private static bool TryGetSince(HttpRequest request, out long? since, out string problem)
    {
        since = null;
        problem = string.Empty;
        var text = request.Headers["Last-Event-ID"].ToString();
        var from = "Last-Event-ID";
        if (text.Length == 0)
        {
            text = request.Query["since"].ToString();
            from = "since";
        }

        if (text.Length == 0)
        {
            return true;
        }

        if (!EventResume.TryParseSequence(text.Trim(), out var value))
        {
            problem = $"{from} must be a whole number from 0 (the id of the last event received).";
            return false;
        }

        since = value;
        return true;
    }

    /// <summary>One reader: the backlog is written directly (waiting on the network), then live events go through a bounded queue.</summary>
    private sealed class Stream(EventStreamHandler owner, ProtocolSession session, HttpContext context) : IDisposable
    {
        /// <summary>Queued by the heartbeat timer; never written as an event.</summary>
        private static readonly SequencedEvent HeartbeatItem = new(-1, null, []);

        private readonly Channel<SequencedEvent> _queue = Channel.CreateBounded<SequencedEvent>(new BoundedChannelOptions(owner._options.EventStreamQueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });

        private long _queuedBytes;
        private DispatcherEventLog.Cursor? _cursor;

        public async Task RunAsync(long? since, string? streamId, CancellationToken ct)
        {
            var writer = context.Response.BodyWriter;
            _cursor = owner._log.Subscribe(since, streamId, OnEvent);
            using var heartbeat = owner._time.CreateTimer(_ => _queue.Writer.TryWrite(HeartbeatItem), null, owner._options.EventStreamHeartbeat,
                owner._options.EventStreamHeartbeat);
            try
            {
                var unflushed = 0;
                await _cursor.CatchUpAsync(async (e, token) =>
                {
                    Write(writer, e);
                    if (++unflushed == 64)
                    {
                        unflushed = 0;
                        await writer.FlushAsync(token);
                    }
                }, ct);
                await writer.FlushAsync(ct);

                while (await _queue.Reader.WaitToReadAsync(ct))
                {
                    while (_queue.Reader.TryRead(out var item))
                    {
                        if (ReferenceEquals(item, HeartbeatItem))
                        {
                            if (!owner._protocol.MayReceiveEvents(session))
                            {
                                await EndAsync(writer, ct);
                                return;
                            }

                            writer.Write(Heartbeat);
                            continue;
                        }

                        Interlocked.Add(ref _queuedBytes, -item.Frame.Length);
                        Write(writer, item);
                    }

                    await writer.FlushAsync(ct);
                }

                // The queue was closed because the login ended (a slow reader's close carries an exception, caught below).
                await EndAsync(writer, ct);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or ChannelClosedException)
            {
                // The reader went away, or was cut off as too slow: nothing to answer.
                Log.Ended(owner._logger, session.RemoteAddress, ex);
            }
        }

        public void Dispose() => _cursor?.Dispose();

        /// <summary>The login ended (token expired or revoked): say so, and end the stream.</summary>
        private static async Task EndAsync(PipeWriter writer, CancellationToken ct)
        {
            writer.Write("event: error\ndata: {\"code\":\"401\",\"message\":\"The login expired or was revoked: authenticate again and resume with Last-Event-ID.\"}\n\n"u8);
            await writer.FlushAsync(ct);
        }

        private static void Write(PipeWriter writer, SequencedEvent e)
        {
            writer.Write("id: "u8);
            writer.Write(Encoding.ASCII.GetBytes(e.Id));
            writer.Write("\n"u8);
            writer.Write(EventPrefix);
            writer.Write(e.Frame);
            writer.Write("\n\n"u8);
        }

        /// <summary>Called on the feed's thread: queue the event, or cut off a reader that lets its queue fill up.</summary>
        private void OnEvent(SequencedEvent e)
        {
            if (!owner._protocol.MayReceiveEvents(session))
            {
                _queue.Writer.TryComplete();
                return;
            }

            // The frame is the log's own: queueing it costs a reference, and the bound is on what the reader has not taken.
            var queued = Interlocked.Add(ref _queuedBytes, e.Frame.Length);
            if ((queued > owner._options.EventStreamQueueBytes && queued != e.Frame.Length) || !_queue.Writer.TryWrite(e))
            {
                Log.SlowReader(owner._logger, session.RemoteAddress, owner._options.EventStreamQueueCapacity, owner._options.EventStreamQueueBytes);
                _queue.Writer.TryComplete(new ChannelClosedException("The reader is not reading its events."));
                context.Abort();
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 402, EventName = "EventStreamSlowReader", Level = LogLevel.Warning, Message = "Event stream reader {Address} let more than {Capacity} events or {Bytes} bytes pile up unread; disconnecting it")]
        public static partial void SlowReader(ILogger logger, string address, int capacity, long bytes);

        [LoggerMessage(EventId = 403, EventName = "EventStreamEnded", Level = LogLevel.Debug, Message = "Event stream reader {Address}: the stream ended")]
        public static partial void Ended(ILogger logger, string address, Exception exception);
    }
}
