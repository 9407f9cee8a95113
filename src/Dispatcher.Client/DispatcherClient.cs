using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Client.Internal;

namespace Dispatcher.Client;

/// <summary>
/// A client for one dispatcher server. Thread-safe; one instance per server is meant to live as long as the application
/// (it keeps one connection and one login token). Every call takes a <see cref="CancellationToken"/>; a call that fails throws
/// <see cref="DispatcherClientException"/> with the server's code and message.
/// </summary>
public sealed class DispatcherClient : IAsyncDisposable
{
    private readonly DispatcherClientOptions _options;
    private readonly TokenState _token = new();
    private readonly SemaphoreSlim _sessionLock = new(1, 1);
    private readonly HttpChannel? _http;
    private WebSocketSession? _session;
    private bool _disposed;

    /// <summary>Initializes a new client. Nothing is sent until the first call.</summary>
    /// <param name="options">Where to connect and how to log in; copied, so later changes have no effect.</param>
    /// <exception cref="ArgumentException">The options are incomplete or invalid (the message names the option).</exception>
    public DispatcherClient(DispatcherClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Validated();
        if (_options.Transport == DispatcherClientTransport.Http)
        {
            _http = new HttpChannel(_options, _token);
        }
    }

    /// <summary>Gets the server's address.</summary>
    public Uri Url => _options.Url!;

    /// <summary>Asks the server what it is (<c>rpc/identify</c>; needs no login).</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The server's type and host name.</returns>
    public async Task<RemoteServerInfo> IdentifyAsync(CancellationToken cancellationToken = default)
    {
        var reply = Wire.Object(await RequestAsync("rpc", "identify", new JsonObject(), cancellationToken).ConfigureAwait(false), "identify");
        return new RemoteServerInfo { Type = Wire.Text(reply["type"]) ?? string.Empty, HostName = Wire.Text(reply["hostname"]) ?? string.Empty };
    }

    /// <summary>Lists pending and running jobs (<c>list</c>), running jobs first within each queue.</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The jobs.</returns>
    public async Task<IReadOnlyList<RemoteJob>> ListAsync(CancellationToken cancellationToken = default) =>
        Wire.Jobs(await SendAsync("list", null, cancellationToken).ConfigureAwait(false));

    /// <summary>Starts jobs (<c>run</c>). Jobs the server rejects are reported in the result, not thrown.</summary>
    /// <param name="jobs">The jobs.</param>
    /// <param name="cancellationToken">Cancels the call (jobs the server already accepted keep running).</param>
    /// <returns>Which jobs started, and why the others were rejected.</returns>
    public async Task<RemoteRunResult> RunAsync(IEnumerable<RemoteJobSpec> jobs, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        var args = new JsonObject();
        foreach (var job in jobs)
        {
            ArgumentNullException.ThrowIfNull(job, nameof(jobs));
            if (job.Id == "action" || args.ContainsKey(job.Id))
            {
                throw new ArgumentException($"Job id '{job.Id}' appears twice or is reserved.", nameof(jobs));
            }

            args[job.Id] = Wire.JobValue(job);
        }

        if (args.Count == 0)
        {
            throw new ArgumentException("No job to run.", nameof(jobs));
        }

        return Wire.RunResult(await SendAsync("run", args, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>Starts one job (<c>run</c>).</summary>
    /// <param name="job">The job.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>Whether it started, or why it was rejected.</returns>
    public Task<RemoteRunResult> RunAsync(RemoteJobSpec job, CancellationToken cancellationToken = default) =>
        RunAsync([job ?? throw new ArgumentNullException(nameof(job))], cancellationToken);

    /// <summary>Kills pending and running jobs (<c>kill</c>) with their whole process trees.</summary>
    /// <param name="jobIds">The job ids.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The ids that were pending or running (unknown and finished ids are left out).</returns>
    public async Task<IReadOnlyList<string>> KillAsync(IEnumerable<string> jobIds, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobIds);
        var reply = await SendAsync("kill", new JsonObject { ["job_id"] = Array(jobIds) }, cancellationToken).ConfigureAwait(false);
        return Wire.Strings(Wire.Object(reply, "kill")["killed"]?["jobs"]);
    }

    /// <summary>
    /// Reads the retained results of finished jobs (<c>history</c>), oldest first: every page, following the server's
    /// <c>next</c> cursor (one request per page).
    /// </summary>
    /// <param name="jobIds">Only these ids, or <see langword="null"/> for all.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The finished jobs.</returns>
    public async Task<IReadOnlyList<RemoteJobResult>> HistoryAsync(IEnumerable<string>? jobIds = null, CancellationToken cancellationToken = default)
    {
        var ids = jobIds is null ? null : Array(jobIds);
        var all = new List<RemoteJobResult>();
        string? after = null;
        do
        {
            var args = new JsonObject();
            if (ids is not null)
            {
                args["job_id"] = ids.DeepClone();
            }

            if (after is not null)
            {
                args["after"] = after;
            }

            var (page, next) = Wire.History(await SendAsync("history", args, cancellationToken).ConfigureAwait(false));
            all.AddRange(page);

            // A cursor that does not move would loop for ever: a server that repeats it has no further page to give.
            after = next is not null && next != after && page.Count > 0 ? next : null;
        }
        while (after is not null);

        return all;
    }

    /// <summary>Pauses a queue (<c>{"action": "pause", "queue": Q}</c>): its pending jobs wait until it is resumed.</summary>
    /// <param name="queue">The queue.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The queues now paused by this call. A server without queue control answers 400.</returns>
    public async Task<IReadOnlyList<string>> PauseQueueAsync(string queue, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        return Wire.Strings(Wire.Object(await SendAsync("pause", new JsonObject { ["queue"] = queue }, cancellationToken).ConfigureAwait(false), "pause")["paused"]);
    }

    /// <summary>Resumes a paused queue (<c>{"action": "resume", "queue": Q}</c>).</summary>
    /// <param name="queue">The queue.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The queues resumed by this call. A server without queue control answers 400.</returns>
    public async Task<IReadOnlyList<string>> ResumeQueueAsync(string queue, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        return Wire.Strings(Wire.Object(await SendAsync("resume", new JsonObject { ["queue"] = queue }, cancellationToken).ConfigureAwait(false), "resume")["resumed"]);
    }

    /// <summary>
    /// Sends any <c>rpc/dispatcher</c> action, for actions a newer server offers before this client names them.
    /// </summary>
    /// <param name="action">The action, such as <c>"list"</c>.</param>
    /// <param name="arguments">The other members of <c>args</c>, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The reply's <c>args</c>.</returns>
    public Task<JsonNode?> SendAsync(string action, JsonObject? arguments, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(action);
        var args = arguments?.DeepClone().AsObject() ?? [];
        args["action"] = action;
        return RequestAsync("rpc", "dispatcher", args, cancellationToken);
    }

    /// <summary>Sends any request of the envelope (<c>namespace</c>, <c>name</c>, <c>args</c>) and returns the reply's <c>args</c>.</summary>
    /// <param name="ns">The namespace, such as <c>"rpc"</c>.</param>
    /// <param name="name">The name, such as <c>"dispatcher"</c>.</param>
    /// <param name="args">The args.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The reply's <c>args</c>.</returns>
    public async Task<JsonNode?> RequestAsync(string ns, string name, JsonNode? args, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(ns);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            if (_http is not null)
            {
                return await _http.RequestAsync(ns, name, args, timeout.Token).ConfigureAwait(false);
            }

            var session = await SessionAsync(timeout.Token).ConfigureAwait(false);
            try
            {
                return await session.RequestAsync(ns, name, args, timeout.Token).ConfigureAwait(false);
            }
            catch (DispatcherClientException ex) when (ex.Code == "401" && _options.UserName is not null && !(ns == "rpc" && name.StartsWith("auth", StringComparison.Ordinal)))
            {
                // The login lapsed (the token expired while the connection was idle or the host was busy): log in again and
                // send once more; a 401 ran nothing.
                await session.LoginAsync(_options, _token, timeout.Token).ConfigureAwait(false);
                return await session.RequestAsync(ns, name, args, timeout.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new DispatcherClientException($"No answer from {Url} to {ns}/{name} within {_options.RequestTimeout.TotalSeconds:0.###} s.", new TimeoutException(ex.Message, ex));
        }
    }

    /// <summary>
    /// Subscribes to events over WebSocket and yields them until cancelled. When the connection drops, it reconnects (waiting
    /// <see cref="DispatcherClientOptions.ReconnectDelay"/>, doubling up to <see cref="DispatcherClientOptions.MaxReconnectDelay"/>),
    /// yields a <see cref="RemoteEventKind.Reconnected"/> event and resumes after the last event received: the server sends the
    /// events sent meanwhile, each once, or a <see cref="RemoteEventKind.Gap"/> event when it no longer holds them (or restarted).
    /// </summary>
    /// <param name="events">The event names (default <c>"dispatcher"</c>).</param>
    /// <param name="cancellationToken">Ends the subscription.</param>
    /// <returns>The events.</returns>
    /// <exception cref="DispatcherClientException">The server refused the login or the subscription (reconnecting cannot help).</exception>
    public IAsyncEnumerable<RemoteEvent> SubscribeAsync(IEnumerable<string>? events = null, CancellationToken cancellationToken = default)
    {
        var names = events?.ToArray() ?? ["dispatcher"];
        return EventsAsync(names, announceFirst: false, cancellationToken);
    }

    /// <summary>Waits until a job finishes, whatever its outcome, surviving dropped connections.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Stops waiting (the job goes on).</param>
    /// <returns>The finished job; <see cref="RemoteJobResult.Succeeded"/> tells whether it succeeded.</returns>
    /// <exception cref="DispatcherClientException">Code <c>"404"</c>: the job is neither pending, running nor in the history.</exception>
    public async Task<RemoteJobResult> WaitAsync(string jobId, CancellationToken cancellationToken = default)
    {
        await foreach (var item in WatchAsync(jobId, trackOutput: false, cancellationToken).ConfigureAwait(false))
        {
            if (item.Result is { } result)
            {
                return result;
            }
        }

        throw new OperationCanceledException(cancellationToken);
    }

    /// <summary>
    /// Follows a job's output until it finishes; the concatenated chunks of a command are its whole output, in order. Output
    /// comes live when the call started while the job was pending. For a job already running then (or when a dropped
    /// connection is restored while it runs), the earlier output is not available from the server yet, so the output from
    /// that point comes when the job finishes. Call <see cref="WaitAsync"/> afterwards for the outcome.
    /// </summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Stops following (the job goes on).</param>
    /// <returns>The output, chunk by chunk.</returns>
    /// <exception cref="DispatcherClientException">Code <c>"404"</c>: the job is neither pending, running nor in the history.</exception>
    public async IAsyncEnumerable<RemoteOutputChunk> FollowAsync(string jobId, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var item in WatchAsync(jobId, trackOutput: true, cancellationToken).ConfigureAwait(false))
        {
            if (item.Chunk is { } chunk)
            {
                yield return chunk;
            }
        }
    }

    /// <summary>Closes the connection.</summary>
    /// <returns>A task that completes when the connection is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_session is { } session)
        {
            await session.DisposeAsync().ConfigureAwait(false);
        }

        _http?.Dispose();
    }

    private static JsonArray Array(IEnumerable<string> ids) => new(ids.Select(id => (JsonNode?)JsonValue.Create(id)).ToArray());

    private async Task<WebSocketSession> SessionAsync(CancellationToken cancellationToken)
    {
        await _sessionLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_session is { IsOpen: true } open)
            {
                return open;
            }

            if (_session is { } broken)
            {
                _session = null;
                await broken.DisposeAsync().ConfigureAwait(false);
            }

            _session = await WebSocketSession.ConnectAsync(_options, _token, eventCapacity: 0, cancellationToken).ConfigureAwait(false);
            return _session;
        }
        finally
        {
            _sessionLock.Release();
        }
    }

    private async IAsyncEnumerable<RemoteEvent> EventsAsync(string[] names, bool announceFirst, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var delay = _options.ReconnectDelay;
        var first = true;
        var channels = new JsonArray(names.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());

        // Where the subscription resumes: the stream id the server gave, and the last sequence number received from it.
        var position = new StreamPosition();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var resumedAfter = position.Resumable ? position.Last : null;
            var session = await TrySubscribeAsync(channels, position, cancellationToken).ConfigureAwait(false);
            if (session is null)
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxReconnectDelay.Ticks));
                continue;
            }

            try
            {
                delay = _options.ReconnectDelay;
                if (!first || announceFirst)
                {
                    yield return new RemoteEvent { Kind = RemoteEventKind.Reconnected, Name = string.Empty, Args = [], Sequence = first ? null : resumedAfter };
                }

                first = false;
                var reader = session.Events;
                while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    while (reader.TryRead(out var frame))
                    {
                        var e = Wire.Event(frame);
                        if (e.Sequence is { } seq && e.Name == "dispatcher")
                        {
                            if (position.Last is { } last && seq <= last && e.Kind != RemoteEventKind.Gap)
                            {
                                continue;
                            }

                            position.Last = seq;
                            if (e.Kind == RemoteEventKind.Gap && Wire.Text(e.Args["stream"]) is { } stream)
                            {
                                position.Stream = stream;
                            }
                        }

                        yield return e;
                    }
                }
            }
            finally
            {
                await session.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// A subscribed session, or null when the connection failed (worth retrying); server refusals are thrown. Subscribes with
    /// the object form (<c>channels</c>, <c>since</c>, <c>stream</c>), which also tells the stream id; a server that refuses that
    /// form (400) gets the plain array, and the subscription does not resume.
    /// </summary>
    private async Task<WebSocketSession?> TrySubscribeAsync(JsonArray names, StreamPosition position, CancellationToken cancellationToken)
    {
        WebSocketSession? session = null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            session = await WebSocketSession.ConnectAsync(_options, _token, _options.EventBufferCapacity, timeout.Token).ConfigureAwait(false);
            if (position.Plain)
            {
                await session.RequestAsync("events", "subscribe", names.DeepClone(), timeout.Token).ConfigureAwait(false);
                return session;
            }

            // The nested shape carries every job's pending, running and finished events with their output; a server's default
            // (the sysadm shape) sends only a start marker and the flat log for jobs it does not recognise. A server from before
            // the shape option ignores the member and sends the nested shape anyway.
            var args = new JsonObject { ["channels"] = names.DeepClone(), ["shape"] = "nested" };
            if (position.Resumable)
            {
                args["since"] = position.Last;
                args["stream"] = position.Stream;
            }

            JsonNode? reply;
            try
            {
                reply = await session.RequestAsync("events", "subscribe", args, timeout.Token).ConfigureAwait(false);
            }
            catch (DispatcherClientException ex) when (ex.Code == "400")
            {
                position.Plain = true;
                await session.RequestAsync("events", "subscribe", names.DeepClone(), timeout.Token).ConfigureAwait(false);
                return session;
            }

            if (!position.Resumable && reply is JsonObject o && Wire.Text(o["stream"]) is { } stream && Wire.Sequence(o["seq"]) is { } head)
            {
                // First subscription: events from here on, numbered after the head the server reported.
                position.Stream = stream;
                position.Last = head;
            }

            return session;
        }
        catch (Exception ex) when ((ex is DispatcherClientException { Code: null } || ex is OperationCanceledException) && !cancellationToken.IsCancellationRequested)
        {
            if (session is not null)
            {
                await session.DisposeAsync().ConfigureAwait(false);
            }

            return null;
        }
        catch
        {
            if (session is not null)
            {
                await session.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    private async IAsyncEnumerable<WatchItem> WatchAsync(string jobId, bool trackOutput, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        var sent = new Dictionary<string, StringBuilder>(StringComparer.Ordinal);

        // Live while every output delta since the job started has come to us: joined while it was pending, and never
        // disconnected while it ran. Otherwise earlier output is missing (the server offers no log to catch up from), so the
        // rest waits for the finished event, which holds the whole output, and order is kept.
        var live = true;
        await foreach (var e in EventsAsync(["dispatcher"], announceFirst: true, cancellationToken).ConfigureAwait(false))
        {
            RemoteJobResult? finished = null;
            if (e.Kind == RemoteEventKind.Reconnected && e.Sequence is not null)
            {
                // Resumed: the server sends what was missed, or a gap.
                continue;
            }

            if (e.Kind is RemoteEventKind.Reconnected or RemoteEventKind.Gap)
            {
                // Subscribed (again): events before this point are not coming, so ask where the job is now.
                var (state, result) = await WhereAsync(jobId, cancellationToken).ConfigureAwait(false);
                live &= state != "running";
                finished = result;
            }
            else if (e.JobId == jobId && e.Kind == RemoteEventKind.JobRunning && trackOutput && live && e.Details is { } running)
            {
                foreach (var r in running.Results.Where(r => r.Output.Length > 0))
                {
                    (sent.TryGetValue(r.Command, out var b) ? b : sent[r.Command] = new StringBuilder()).Append(r.Output);
                    yield return new WatchItem(new RemoteOutputChunk { Command = r.Command, Text = r.Output }, null);
                }
            }
            else if (e.JobId == jobId && e.Kind == RemoteEventKind.JobFinished)
            {
                finished = e.Details ?? (await WhereAsync(jobId, cancellationToken).ConfigureAwait(false)).Result;
            }

            if (finished is null)
            {
                continue;
            }

            if (trackOutput)
            {
                foreach (var r in finished.Results)
                {
                    // What has not been yielded: all of it when nothing came live, else what the live deltas did not cover.
                    var already = sent.TryGetValue(r.Command, out var b) ? b.ToString() : string.Empty;
                    var rest = already.Length == 0 ? r.Output
                        : r.Output.Length > already.Length && r.Output.StartsWith(already, StringComparison.Ordinal) ? r.Output[already.Length..]
                        : string.Empty;
                    if (rest.Length > 0)
                    {
                        yield return new WatchItem(new RemoteOutputChunk { Command = r.Command, Text = rest }, null);
                    }
                }
            }

            yield return new WatchItem(null, finished);
            yield break;
        }
    }

    /// <summary>Where the job is: pending or running (no result), or finished (its result); 404 when the server has no trace of it.</summary>
    private async Task<(string State, RemoteJobResult? Result)> WhereAsync(string jobId, CancellationToken cancellationToken)
    {
        // Listed first: an id can be reused, so an old result in the history says nothing while the id is pending or running.
        if ((await ListAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(j => j.Id == jobId) is { } listed)
        {
            return (listed.State, null);
        }

        var history = await HistoryAsync([jobId], cancellationToken).ConfigureAwait(false);
        return history.LastOrDefault(h => h.Id == jobId) is { } result
            ? ("finished", result)
            : throw new DispatcherClientException("404", $"Job '{jobId}' is neither pending, running nor in the history of {Url}.");
    }

    /// <summary>Where a subscription is in the server's event stream.</summary>
    private sealed class StreamPosition
    {
        public string? Stream { get; set; }

        public long? Last { get; set; }

        /// <summary>The server refused the object form: subscribe with the plain array, without resuming.</summary>
        public bool Plain { get; set; }

        public bool Resumable => !Plain && Stream is not null && Last is not null;
    }

    private sealed record WatchItem(RemoteOutputChunk? Chunk, RemoteJobResult? Result);
}
