using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace Dispatcher.Client.Internal;

/// <summary>
/// One WebSocket connection: requests matched to replies by id, events queued for one reader, the login and its renewal.
/// A session that fails stays failed; its owner opens a new one.
/// </summary>
internal sealed class WebSocketSession : IAsyncDisposable
{
    private readonly ClientWebSocket _socket = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<JsonObject>> _pending = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Channel<JsonObject>? _events;
    private readonly Uri _uri;
    private Task _receiver = Task.CompletedTask;
    private Task _renewal = Task.CompletedTask;
    private long _nextId;
    private volatile DispatcherClientException? _failure;

    private WebSocketSession(Uri uri, int eventCapacity)
    {
        _uri = uri;
        if (eventCapacity > 0)
        {
            _events = Channel.CreateBounded<JsonObject>(new BoundedChannelOptions(eventCapacity) { SingleReader = true, SingleWriter = true });
        }
    }

    public bool IsOpen => _failure is null && _socket.State == WebSocketState.Open;

    /// <summary>Events in arrival order; completes when the connection ends.</summary>
    public ChannelReader<JsonObject> Events => _events?.Reader ?? throw new InvalidOperationException("This session does not receive events.");

    /// <summary>Connects and logs in. <paramref name="eventCapacity"/> 0 ignores events.</summary>
    public static async Task<WebSocketSession> ConnectAsync(DispatcherClientOptions options, TokenState token, int eventCapacity, CancellationToken cancellationToken)
    {
        var session = new WebSocketSession(options.WebSocketUri, eventCapacity);
        try
        {
            try
            {
                await session._socket.ConnectAsync(session._uri, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is WebSocketException or HttpRequestException or IOException)
            {
                throw new DispatcherClientException($"Cannot connect to {session._uri}: {ex.Message}", ex);
            }

            session._receiver = Task.Run(session.ReceiveLoopAsync, CancellationToken.None);
            await session.LoginAsync(options, token, cancellationToken).ConfigureAwait(false);
            return session;
        }
        catch
        {
            await session.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async Task<JsonNode?> RequestAsync(string ns, string name, JsonNode? args, CancellationToken cancellationToken)
    {
        ThrowIfFailed();
        var id = "c" + Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var reply = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        if (_failure is not null && _pending.TryRemove(id, out _))
        {
            ThrowIfFailed();
        }

        var bytes = Wire.Envelope(ns, name, id, args);
        using (cancellationToken.Register(() =>
        {
            if (_pending.TryRemove(id, out var r))
            {
                r.TrySetCanceled(cancellationToken);
            }
        }))
        {
            await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _socket.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException)
            {
                _pending.TryRemove(id, out _);
                Fail(new DispatcherClientException($"The connection to {_uri} broke: {ex.Message}", ex));
                ThrowIfFailed();
            }
            finally
            {
                _sendLock.Release();
            }

            return Wire.ReplyArgs(await reply.Task.ConfigureAwait(false));
        }
    }

    public async ValueTask DisposeAsync()
    {
        Fail(new DispatcherClientException($"The connection to {_uri} was closed by the client."));
        if (_socket.State == WebSocketState.Open)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token).ConfigureAwait(false);
                await _receiver.WaitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
            {
                // The server went away first: nothing more to close.
            }
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _socket.Abort();
        await Task.WhenAll(_receiver, _renewal).ConfigureAwait(false);
        _socket.Dispose();
        _stop.Dispose();
        _sendLock.Dispose();
    }

    /// <summary>Logs in (again: after the server forgot the login, when the token expired); a no-op without a user name.</summary>
    public async Task LoginAsync(DispatcherClientOptions options, TokenState token, CancellationToken cancellationToken)
    {
        if (options.UserName is null)
        {
            return;
        }

        if (token.Current is { } known)
        {
            try
            {
                await RequestAsync("rpc", "auth_token", new JsonObject { ["token"] = known }, cancellationToken).ConfigureAwait(false);
                StartRenewal(token);
                return;
            }
            catch (DispatcherClientException ex) when (ex.Code == "401")
            {
                token.Clear(known); // expired: log in with the password
            }
        }

        var reply = await RequestAsync("rpc", "auth", new JsonObject { ["username"] = options.UserName, ["password"] = options.Password }, cancellationToken)
            .ConfigureAwait(false);
        var (value, lifetime) = ReadToken(reply);
        token.Set(value, lifetime);
        StartRenewal(token);
    }

    internal static (string Token, TimeSpan Lifetime) ReadToken(JsonNode? reply)
    {
        if (reply is JsonArray { Count: >= 1 } a && Wire.Text(a[0]) is { Length: > 0 } value)
        {
            var seconds = a.Count > 1 && a[1] is JsonValue v && v.TryGetValue<double>(out var s) && s > 0 ? s : 300;
            return (value, TimeSpan.FromSeconds(seconds));
        }

        throw new DispatcherClientException($"The server's login reply is not [token, lifetime]: {Wire.Show(reply)}");
    }

    // A token lives TokenLifetime after its last use, and the server closes a connection idle for IdleTimeout: renewing at half
    // the lifetime keeps both alive on a connection that only receives events.
    private void StartRenewal(TokenState token)
    {
        if (!_renewal.IsCompleted)
        {
            return;
        }

        var period = token.Lifetime / 2 < TimeSpan.FromMilliseconds(100) ? TimeSpan.FromMilliseconds(100) : token.Lifetime / 2;
        _renewal = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(period);
            try
            {
                while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
                {
                    if (token.Current is not { } current)
                    {
                        continue;
                    }

                    try
                    {
                        await RequestAsync("rpc", "auth_token", new JsonObject { ["token"] = current }, _stop.Token).ConfigureAwait(false);
                    }
                    catch (DispatcherClientException ex) when (ex.Code is not null)
                    {
                        token.Clear(current);
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or DispatcherClientException or ObjectDisposedException)
            {
                // The session ended.
            }
        });
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        var message = new ArrayBufferWriter<byte>(16 * 1024);
        try
        {
            while (true)
            {
                var result = await _socket.ReceiveAsync(buffer.AsMemory(), _stop.Token).ConfigureAwait(false);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    Fail(new DispatcherClientException(
                        $"The server closed the connection to {_uri} ({(int?)_socket.CloseStatus} {_socket.CloseStatusDescription})."));
                    return;
                }

                message.Write(buffer.AsSpan(0, result.Count));
                if (!result.EndOfMessage)
                {
                    continue;
                }

                if (result.MessageType == WebSocketMessageType.Text)
                {
                    Handle(message.WrittenMemory);
                }

                message.Clear();
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException or JsonException)
        {
            Fail(new DispatcherClientException($"The connection to {_uri} broke: {ex.Message}", ex));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Handle(ReadOnlyMemory<byte> utf8)
    {
        if (JsonNode.Parse(utf8.Span) is not JsonObject frame)
        {
            return;
        }

        var id = Wire.Text(frame["id"]);
        if (!string.IsNullOrEmpty(id) && _pending.TryRemove(id, out var reply))
        {
            reply.TrySetResult(frame);
        }
        else if (_events is not null && Wire.Text(frame["namespace"]) == "events" && !_events.Writer.TryWrite(frame))
        {
            // The reader fell behind by a whole buffer: end the session rather than grow without bound; the subscription
            // reconnects and reports that events were lost.
            Fail(new DispatcherClientException($"More than {_events.Reader.Count} events from {_uri} waited to be read; the subscription dropped them."));
            _socket.Abort();
        }
    }

    private void Fail(DispatcherClientException failure)
    {
        Interlocked.CompareExchange(ref _failure, failure, null);
        foreach (var id in _pending.Keys)
        {
            if (_pending.TryRemove(id, out var reply))
            {
                reply.TrySetException(_failure!);
            }
        }

        _events?.Writer.TryComplete();
    }

    private void ThrowIfFailed()
    {
        if (_failure is { } f)
        {
            throw new DispatcherClientException(f.Message, f.InnerException ?? f);
        }
    }
}
