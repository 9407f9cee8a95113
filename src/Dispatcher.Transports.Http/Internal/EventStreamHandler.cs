using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.Http.Internal;

/// <summary>
/// <c>GET /events/dispatcher</c>: the <c>events/dispatcher</c> stream as Server-Sent Events, in the nested shape (every job's
/// pending, running and finished events; what Dispatcher.Client and the dashboard read). Each event is <c>id: SEQ</c>,
/// <c>event: dispatcher</c> and <c>data:</c> the same JSON frame a WebSocket subscriber of that shape gets. A reader resumes with
/// <c>Last-Event-ID</c> (or <c>?since=SEQ</c>, with <c>&amp;stream=ID</c> when it knows the stream). The subscription is an
/// ordinary <c>events/subscribe</c> through <see cref="ProtocolServer"/>, so access checks and replay are the WebSocket's.
/// </summary>
internal sealed partial class EventStreamHandler(ProtocolServer protocol, IOptions<HttpTransportOptions> options, TimeProvider time,
    ILogger<EventStreamHandler>? logger = null)
{
    private static readonly byte[] EventPrefix = "event: dispatcher\ndata: "u8.ToArray();
    private static readonly byte[] Heartbeat = ": heartbeat\n\n"u8.ToArray();
    private readonly HttpTransportOptions _options = options.Value;
    private readonly TimeProvider _time = time;
    private readonly ILogger _logger = (ILogger?)logger ?? NullLogger.Instance;

    public async Task HandleAsync(HttpContext context)
    {
        var address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var ct = context.RequestAborted;
        using var stream = new Stream(this, context);
        using var connection = new ProtocolConnection("sse", address, context.User, stream.OnEvent);
        stream.Connection = connection;
        if (await protocol.Authenticator.AuthenticateHeaderAsync(connection, context.Request.Headers.Authorization.ToString(), ct) is { } denied)
        {
            await HttpRequestHandler.WriteAsync(context, ProtocolResponse.Error(denied.ErrorCode!.Value, denied.ErrorMessage!));
            return;
        }

        if (connection.User is null && context.User.Identity?.IsAuthenticated != true)
        {
            await HttpRequestHandler.WriteAsync(context, ProtocolResponse.Error(ProtocolErrorCode.Unauthorized,
                "Not authenticated: send an Authorization header, Basic with a user name and password, or Bearer with a token from rpc/auth."));
            return;
        }

        if (!TryGetSince(context.Request, out var since, out var problem))
        {
            await HttpRequestHandler.WriteAsync(context, ProtocolResponse.Error(ProtocolErrorCode.BadRequest, problem));
            return;
        }

        var subscribe = new JsonObject { ["channels"] = new JsonArray("dispatcher"), ["shape"] = "nested" };
        if (since is not null)
        {
            subscribe["since"] = since;
        }

        if (context.Request.Query["stream"].ToString() is { Length: > 0 } streamId)
        {
            subscribe["stream"] = streamId;
        }

        var reply = await protocol.HandleBodyAsync(connection, "events", "subscribe", Encoding.UTF8.GetBytes(subscribe.ToJsonString()), ct);
        if (reply.Status != StatusCodes.Status200OK)
        {
            await HttpRequestHandler.WriteAsync(context, reply);
            return;
        }

        var response = context.Response;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(ct);
        await stream.RunAsync(protocol.Authenticator, ct);
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

        if (!long.TryParse(text.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value))
        {
            problem = $"{from} must be a whole number from 0 (the id of the last event received).";
            return false;
        }

        since = value;
        return true;
    }

    /// <summary>The <c>seq</c> member of a frame (the SSE id), read without building a tree.</summary>
    private static long? ReadSequence(ReadOnlySpan<byte> frame)
    {
        var reader = new Utf8JsonReader(frame);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return null;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isSeq = reader.ValueTextEquals("seq"u8);
            reader.Read();
            if (isSeq)
            {
                return reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var seq) ? seq : null;
            }

            reader.Skip();
        }

        return null;
    }

    /// <summary>One reader: the backlog is written directly (waiting on the network), then live events go through a bounded queue.</summary>
    private sealed class Stream(EventStreamHandler owner, HttpContext context) : IDisposable
    {
        private readonly Channel<Item> _queue = Channel.CreateBounded<Item>(new BoundedChannelOptions(owner._options.EventStreamQueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });

        private long _queuedBytes;

        public ProtocolConnection? Connection { get; set; }

        public async Task RunAsync(ProtocolAuthenticator authenticator, CancellationToken ct)
        {
            var connection = Connection!;
            var writer = context.Response.BodyWriter;
            using var heartbeat = owner._time.CreateTimer(_ => _queue.Writer.TryWrite(new Item(default, IsHeartbeat: true)), null,
                owner._options.EventStreamHeartbeat, owner._options.EventStreamHeartbeat);
            using var loginEnded = connection.LoginEnded.Register(() => _queue.Writer.TryComplete());
            try
            {
                var unflushed = 0;
                await connection.CatchUpAsync(async (frame, token) =>
                {
                    Write(writer, frame);
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
                        if (item.IsHeartbeat)
                        {
                            if (!authenticator.MayReceiveEvents(connection))
                            {
                                await EndAsync(writer, ct);
                                return;
                            }

                            writer.Write(Heartbeat);
                            continue;
                        }

                        Interlocked.Add(ref _queuedBytes, -item.Frame.Length);
                        Write(writer, item.Frame);
                    }

                    await writer.FlushAsync(ct);
                }

                // The queue was closed because the login ended (a slow reader's close carries an exception, caught below).
                await EndAsync(writer, ct);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or ChannelClosedException)
            {
                // The reader went away, or was cut off as too slow: nothing to answer.
                Log.Ended(owner._logger, connection.RemoteAddress, ex);
            }
        }

        public void Dispose() => _queue.Writer.TryComplete();

        /// <summary>Called on the feed's thread: queue the frame, or cut off a reader that lets its queue fill up.</summary>
        public void OnEvent(ReadOnlyMemory<byte> frame)
        {
            // The frame is the replay buffer's own: queueing it costs a reference, and the bound is on what the reader has not taken.
            var queued = Interlocked.Add(ref _queuedBytes, frame.Length);
            if ((queued > owner._options.EventStreamQueueBytes && queued != frame.Length) || !_queue.Writer.TryWrite(new Item(frame, IsHeartbeat: false)))
            {
                Log.SlowReader(owner._logger, Connection?.RemoteAddress ?? "?", owner._options.EventStreamQueueCapacity, owner._options.EventStreamQueueBytes);
                _queue.Writer.TryComplete(new ChannelClosedException("The reader is not reading its events."));
                context.Abort();
            }
        }

        /// <summary>The login ended (token expired or revoked): say so, and end the stream.</summary>
        private static async Task EndAsync(PipeWriter writer, CancellationToken ct)
        {
            writer.Write("event: error\ndata: {\"code\":\"401\",\"message\":\"The login expired or was revoked: authenticate again and resume with Last-Event-ID.\"}\n\n"u8);
            await writer.FlushAsync(ct);
        }

        private static void Write(PipeWriter writer, ReadOnlyMemory<byte> frame)
        {
            if (ReadSequence(frame.Span) is { } seq)
            {
                writer.Write("id: "u8);
                writer.Write(Encoding.ASCII.GetBytes(seq.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                writer.Write("\n"u8);
            }

            writer.Write(EventPrefix);
            writer.Write(frame.Span);
            writer.Write("\n\n"u8);
        }

        private readonly record struct Item(ReadOnlyMemory<byte> Frame, bool IsHeartbeat);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 402, EventName = "EventStreamSlowReader", Level = LogLevel.Warning, Message = "Event stream reader {Address} let more than {Capacity} events or {Bytes} bytes pile up unread; disconnecting it")]
        public static partial void SlowReader(ILogger logger, string address, int capacity, long bytes);

        [LoggerMessage(EventId = 403, EventName = "EventStreamEnded", Level = LogLevel.Debug, Message = "Event stream reader {Address}: the stream ended")]
        public static partial void Ended(ILogger logger, string address, Exception exception);
    }
}
