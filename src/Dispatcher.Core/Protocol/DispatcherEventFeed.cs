using System.Globalization;
using System.Text.Json.Nodes;
using Dispatcher.Events;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// The dispatcher's events in the sysadm wire shape (<c>events/dispatcher</c> frames): pending, running (when a job starts, then at
/// most once per <see cref="DispatcherProtocolOptions.EventUpdateInterval"/> with only the output printed since the previous
/// frame) and finished (with the job's whole kept output and return codes), each enriched by the registered
/// <see cref="IDispatcherEventEnricher"/>s and serialized once for every listener.
/// </summary>
/// <remarks>
/// The feed subscribes to the dispatcher only while it has listeners. Listeners are called on the feed's thread and must not
/// block: queue the frame and return.
/// </remarks>
public sealed class DispatcherEventFeed : IDisposable
{
    private readonly object _gate = new();
    private readonly IDispatcher _dispatcher;
    private readonly DispatcherProtocolOptions _options;
    private readonly IDispatcherEventEnricher[] _enrichers;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private const int FeedBufferCapacity = 65_536;

    private readonly int _deltaLimit;
    private readonly int _bufferCapacity;
    private readonly Dictionary<string, JobFeedState> _jobs = new(StringComparer.Ordinal);
    private Action<DispatcherWireEvent>[] _listeners = [];
    private long _sequence;
    private DispatcherSubscription? _subscription;

    /// <summary>Creates the feed. Resolve it from dependency injection rather than creating it.</summary>
    /// <param name="dispatcher">The dispatcher.</param>
    /// <param name="options">The protocol options.</param>
    /// <param name="dispatcherOptions">The dispatcher options (for the output bound).</param>
    /// <param name="enrichers">The host's enrichers.</param>
    /// <param name="timeProvider">The clock.</param>
    /// <param name="logger">The logger.</param>
    public DispatcherEventFeed(IDispatcher dispatcher, IOptions<DispatcherProtocolOptions> options, IOptions<DispatcherOptions> dispatcherOptions,
        IEnumerable<IDispatcherEventEnricher> enrichers, TimeProvider timeProvider, ILogger<DispatcherEventFeed>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(dispatcherOptions);
        _dispatcher = dispatcher;
        _options = options.Value;
        _enrichers = [.. enrichers];
        _time = timeProvider;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _deltaLimit = dispatcherOptions.Value.MaxOutputCharacters;
        _bufferCapacity = dispatcherOptions.Value.EventBufferCapacity;
    }

    /// <summary>Adds a listener; dispose the result to remove it.</summary>
    /// <param name="listener">Called for every event, on the feed's thread; it must not block.</param>
    /// <returns>The registration.</returns>
    public IDisposable Listen(Action<DispatcherWireEvent> listener) => Listen(listener, out _);

    /// <summary>Adds a listener and tells the <see cref="DispatcherWireEvent.Sequence"/> of the last event before it.</summary>
    internal IDisposable Listen(Action<DispatcherWireEvent> listener, out long lastSequence)
    {
        ArgumentNullException.ThrowIfNull(listener);
        lock (_gate)
        {
            lastSequence = _sequence;
            _listeners = [.. _listeners, listener];
            if (_subscription is null)
            {
                _subscription = SubscribeToDispatcher();
                var subscription = _subscription;
                _ = Task.Run(() => PumpAsync(subscription));
            }
        }

        return new Registration(this, listener);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate)
        {
            _listeners = [];
            StopSubscription();
        }
    }

    private void Remove(Action<DispatcherWireEvent> listener)
    {
        lock (_gate)
        {
            var index = Array.IndexOf(_listeners, listener);
            if (index < 0)
            {
                return;
            }

            _listeners = [.. _listeners.AsSpan(0, index), .. _listeners.AsSpan(index + 1)];
            if (_listeners.Length == 0)
            {
                StopSubscription();
            }
        }
    }

    /// <summary>
    /// The feed's one subscription serves every client and never blocks (listeners only queue frames), so it falls behind only
    /// when the host is starved of CPU, typically during a burst of thousands of jobs enqueued at once. It gets a larger buffer
    /// than an ordinary subscriber, so that such a burst does not cost clients their events.
    /// </summary>
    /// <remarks>
    /// The feed makes no frame of a command's start or end (they only update a job's state for its next frame), so its
    /// subscription is not woken for them: they arrive, in order, with the next event, and a running update that fires first
    /// takes them itself (<see cref="ScheduleUpdate"/>).
    /// </remarks>
    private DispatcherSubscription SubscribeToDispatcher() =>
        _dispatcher is Internal.DefaultDispatcher own ? own.Subscribe(Math.Max(_bufferCapacity, FeedBufferCapacity), holdCommandEvents: true) : _dispatcher.Subscribe();

    private void StopSubscription()
    {
        _subscription?.Dispose();
        _subscription = null;
        foreach (var job in _jobs.Values)
        {
            job.Timer?.Dispose();
        }

        _jobs.Clear();
    }

    private async Task PumpAsync(DispatcherSubscription subscription)
    {
        try
        {
            // Events are read only under the lock (here and by a running update, which reads what is waiting before it fires),
            // so that every event is handled once and in order.
            while (await subscription.Events.WaitToReadAsync().ConfigureAwait(false))
            {
                lock (_gate)
                {
                    if (!ReferenceEquals(subscription, _subscription))
                    {
                        return;
                    }

                    HandleWaiting(subscription);
                }
            }
        }
        catch (Exception ex)
        {
            // The feed itself fell behind (it never blocks, so only under extreme load), or a bug threw: log it and start over with
            // a new subscription, so that clients keep getting events. A subscription already replaced or stopped is left alone.
            lock (_gate)
            {
                if (ReferenceEquals(subscription, _subscription) && _listeners.Length > 0)
                {
                    if (ex is EventStreamOverflowException overflow)
                    {
                        FeedLog.Overflow(_logger, overflow.Capacity);
                    }
                    else
                    {
                        FeedLog.PumpFailed(_logger, ex);
                    }

                    StopSubscription();
                    _subscription = SubscribeToDispatcher();
                    var next = _subscription;
                    _ = Task.Run(() => PumpAsync(next));
                }
            }
        }
    }

    /// <summary>Handles the events waiting in the subscription, in order. Called under the lock.</summary>
    private void HandleWaiting(DispatcherSubscription subscription)
    {
        while (subscription.Events.TryRead(out var e))
        {
            Handle(e);
        }
    }

    /// <summary>Turns one dispatcher event into zero or more wire events. Called under the lock.</summary>
    private void Handle(DispatcherEvent e)
    {
        switch (e)
        {
            case JobPendingEvent pending:
                // Pending again after running: a retry waits for its next attempt; the old attempt's update timer goes.
                if (_jobs.TryGetValue(pending.JobId, out var previous))
                {
                    previous.Timer?.Dispose();
                }

                _jobs[pending.JobId] = new JobFeedState(pending.Job.Commands);
                Emit(pending.JobId, JobState.Pending, pending.Job.Commands, null, new JsonObject
                {
                    ["state"] = "pending",
                    ["process_id"] = pending.JobId,
                });
                break;
            case JobStartedEvent started:
            {
                var job = State(started.JobId, started.Job.Commands);
                job.StartedAt = started.Job.StartedAt;
                EmitRunning(started.JobId, job, DispatcherEventKind.Started);
                break;
            }

            case JobCommandStartedEvent command:
                State(command.JobId, null).CurrentCommand = command.Index;
                break;
            case JobOutputEvent output:
            {
                var job = State(output.JobId, null);
                job.AppendDelta(output.Index, output.Text, _deltaLimit);
                ScheduleUpdate(output.JobId, job);
                break;
            }

            case JobCommandFinishedEvent finished:
                State(finished.JobId, null).ReturnCodes[finished.Index] = finished.ExitCode;
                break;
            case JobFinishedEvent finished:
            {
                if (_jobs.Remove(finished.JobId, out var job))
                {
                    job.Timer?.Dispose();
                    job.StartedAt ??= finished.Result.StartedAt;
                    if (job.HasDelta)
                    {
                        EmitRunning(finished.JobId, job);
                    }
                }

                EmitFinished(finished.Result);
                break;
            }
        }
    }

    private JobFeedState State(string jobId, IReadOnlyList<string>? commands)
    {
        if (!_jobs.TryGetValue(jobId, out var job))
        {
            // The feed started listening after this job started: learn its commands (the keys of its output) and start time
            // from the dispatcher, once per such job. The pump may lag behind the dispatcher, so the job may have finished by
            // now: then its retained result says when it started.
            var info = commands is null ? _dispatcher.GetJob(jobId) : null;
            var result = commands is null && info is null ? _dispatcher.GetResult(jobId) : null;
            job = new JobFeedState(commands ?? info?.Commands ?? result?.Commands ?? []);
            if (info is not null)
            {
                job.StartedAt = info.StartedAt;
                job.CurrentCommand = info.CurrentCommand ?? -1;
            }
            else if (result is not null)
            {
                job.StartedAt = result.StartedAt;
                job.CurrentCommand = result.CommandResults.Count - 1;
            }

            _jobs[jobId] = job;
        }

        return job;
    }

    private void ScheduleUpdate(string jobId, JobFeedState job)
    {
        if (job.Timer is not null)
        {
            return;
        }

        var due = job.LastUpdate + _options.EventUpdateInterval - _time.GetUtcNow();
        job.Timer = _time.CreateTimer(_ =>
        {
            lock (_gate)
            {
                // The job's latest command events may be held in the subscription (not yet handed to the pump): take them and
                // whatever waits before them first, so that the update names the running command and the return codes so far.
                if (_subscription is { } subscription && subscription.FlushHeld())
                {
                    HandleWaiting(subscription);
                }

                if (_jobs.TryGetValue(jobId, out var current) && ReferenceEquals(current, job))
                {
                    job.Timer?.Dispose();
                    job.Timer = null;
                    if (job.HasDelta)
                    {
                        EmitRunning(jobId, job);
                    }
                }
            }
        }, null, due > TimeSpan.Zero ? due : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    private void EmitRunning(string jobId, JobFeedState job, DispatcherEventKind kind = DispatcherEventKind.Update)
    {
        var details = new JsonObject
        {
            ["process_id"] = jobId,
            ["state"] = "running",
            ["cmd_list"] = new JsonArray([.. job.Commands.Select(c => (JsonNode?)c)]),
            ["time_started"] = WireFormat.Iso(job.StartedAt),
        };
        if (job.CurrentCommand >= 0 && job.CurrentCommand < job.Commands.Count)
        {
            details["current_cmd"] = job.Commands[job.CurrentCommand];
        }

        foreach (var (index, delta) in job.TakeDeltas())
        {
            if (index < job.Commands.Count)
            {
                details[job.Commands[index]] = delta;
            }
        }

        foreach (var (index, code) in job.ReturnCodes)
        {
            if (index < job.Commands.Count)
            {
                details["return_codes/" + job.Commands[index]] = code.ToString(CultureInfo.InvariantCulture);
            }
        }

        job.LastUpdate = _time.GetUtcNow();
        Emit(jobId, JobState.Running, job.Commands, null, new JsonObject
        {
            ["state"] = "running",
            ["process_id"] = jobId,
            ["process_details"] = details,
        }, kind);
    }

    private void EmitFinished(JobResult result)
    {
        var details = WireFormat.FinishedDetails(result);
        details.Remove("queue");
        Emit(result.Id, JobState.Finished, result.Commands, result, new JsonObject
        {
            ["state"] = "finished",
            ["process_id"] = result.Id,
            ["process_details"] = details,
        });
    }

    private void Emit(string jobId, JobState state, IReadOnlyList<string> commands, JobResult? result, JsonObject args,
        DispatcherEventKind? kind = null)
    {
        var context = new DispatcherEventContext(jobId, state, commands, result, args);
        if (kind is { } k)
        {
            context.Kind = k;
        }

        foreach (var enricher in _enrichers)
        {
            try
            {
                enricher.Enrich(context);
            }
            catch (Exception ex)
            {
                FeedLog.EnricherFailed(_logger, enricher.GetType().Name, jobId, ex);
            }
        }

        // Both shapes, each serialized at most once: connections choose theirs. The sysadm shape (which drops some events of
        // unrecognised jobs) is made from the nested frame when a connection first asks for it, so a host whose subscribers
        // all read the nested shape does not clone, reshape and serialize every event a second time.
        var wire = new DispatcherWireEvent(jobId, state, ++_sequence, context.Args, context.Kind, commands);
        foreach (var listener in _listeners)
        {
            try
            {
                listener(wire);
            }
            catch (Exception ex)
            {
                FeedLog.ListenerFailed(_logger, ex);
            }
        }
    }

    private sealed class Registration(DispatcherEventFeed feed, Action<DispatcherWireEvent> listener) : IDisposable
    {
        public void Dispose() => feed.Remove(listener);
    }

    private sealed class JobFeedState(IReadOnlyList<string> commands)
    {
        private readonly SortedDictionary<int, Delta> _deltas = [];

        public IReadOnlyList<string> Commands { get; } = commands;

        public DateTimeOffset? StartedAt { get; set; }

        public int CurrentCommand { get; set; } = -1;

        public SortedDictionary<int, int> ReturnCodes { get; } = [];

        public DateTimeOffset LastUpdate { get; set; }

        public ITimer? Timer { get; set; }

        public bool HasDelta => _deltas.Count > 0;

        public void AppendDelta(int index, string text, int limit)
        {
            if (!_deltas.TryGetValue(index, out var delta))
            {
                _deltas[index] = delta = new Delta();
            }

            delta.Append(text, limit);
        }

        public (int Index, string Delta)[] TakeDeltas()
        {
            var taken = _deltas.Select(kv => (kv.Key, kv.Value.ToString())).ToArray();
            _deltas.Clear();
            return taken;
        }

        /// <summary>Output since the last update, bounded like a job's output: the oldest chunks go first.</summary>
        private sealed class Delta
        {
            private readonly Queue<string> _chunks = new();
            private int _limit;
            private long _length;

            public void Append(string text, int limit)
            {
                _limit = limit;
                _chunks.Enqueue(text);
                _length += text.Length;
                while (_chunks.Count > 1 && _length - _chunks.Peek().Length >= limit)
                {
                    _length -= _chunks.Dequeue().Length;
                }
            }

            public override string ToString()
            {
                var all = string.Concat(_chunks);
                return all.Length > _limit ? all[^_limit..] : all;
            }
        }
    }
}

/// <summary>
/// One dispatcher event as produced by <see cref="DispatcherEventFeed"/>, in both shapes (<see cref="DispatcherEventShape"/>), each
/// serialized once: immutable.
/// </summary>
public sealed class DispatcherWireEvent
{
    private readonly byte[] _frame;
    private readonly object _sysadmGate = new();
    private readonly DispatcherEventKind _kind;
    private IReadOnlyList<string>? _commands;
    private byte[]? _sysadmFrame;
    private volatile bool _sysadmMade;

    internal DispatcherWireEvent(string jobId, JobState state, long sequence, JsonObject args, DispatcherEventKind kind, IReadOnlyList<string> commands)
    {
        JobId = jobId;
        State = state;
        Sequence = sequence;
        _kind = kind;
        _commands = commands;
        _frame = Serialize(args, sequence);

        // Counted for the replay buffer's bound as if both shapes were held (the sysadm frame is made later, when asked for,
        // and is at most about the nested frame's size), so that the count does not change while the event is held.
        Size = 2 * _frame.Length;
    }

    /// <summary>
    /// Gets the event's number (member <c>seq</c> of both frames): 1, 2, 3… for the life of the process, whichever shape a
    /// client reads, so that a subscriber can resume after the last one it saw.
    /// </summary>
    public long Sequence { get; }

    /// <summary>Gets the job id.</summary>
    public string JobId { get; }

    /// <summary>Gets the state the event reports.</summary>
    public JobState State { get; }

    /// <summary>Gets a copy of the event's <c>args</c> in the <see cref="DispatcherEventShape.Nested"/> shape.</summary>
    public JsonObject Args => (JsonObject)JsonNode.Parse(_frame)!["args"]!.DeepClone();

    /// <summary>Gets the whole <c>events/dispatcher</c> frame in the <see cref="DispatcherEventShape.Nested"/> shape, as compact UTF-8 JSON.</summary>
    public ReadOnlyMemory<byte> Frame => _frame;

    /// <summary>Gets the frame in a shape, or <see langword="null"/> when that shape sends nothing for this event.</summary>
    /// <param name="shape">The shape.</param>
    /// <returns>The frame, or <see langword="null"/>.</returns>
    public ReadOnlyMemory<byte>? GetFrame(DispatcherEventShape shape)
    {
        if (shape == DispatcherEventShape.Nested)
        {
            return _frame;
        }

        // A null array converts to an empty ReadOnlyMemory, not to null: say which null.
        return SysadmFrame() is { } sysadm ? new ReadOnlyMemory<byte>(sysadm) : (ReadOnlyMemory<byte>?)null;
    }

    /// <summary>Gets the bytes this event is counted for in the replay buffer (both shapes).</summary>
    internal int Size { get; }

    /// <summary>Gets whether the sysadm frame has been made (for tests).</summary>
    internal bool SysadmMade => _sysadmMade;

    /// <summary>The sysadm shape of the enriched args (read back from the nested frame), made once; null when it sends nothing.</summary>
    private byte[]? SysadmFrame()
    {
        if (_sysadmMade)
        {
            return _sysadmFrame;
        }

        lock (_sysadmGate)
        {
            if (!_sysadmMade)
            {
                var frame = JsonNode.Parse(_frame)!.AsObject();
                var args = frame["args"]!.AsObject();
                frame.Remove("args");
                var sysadm = new DispatcherEventContext(JobId, State, _commands!, null, args) { Kind = _kind };
                Sysadm.SysadmEventShape.Apply(sysadm);
                _sysadmFrame = sysadm.Suppressed ? null : Serialize(sysadm.Args, Sequence);
                _commands = null;
                _sysadmMade = true;
            }

            return _sysadmFrame;
        }
    }

    private static byte[] Serialize(JsonObject args, long sequence)
    {
        var envelope = WireFormat.Envelope("events", "dispatcher", string.Empty, args);
        envelope["seq"] = sequence;

        // Straight to UTF-8 (ToJsonString wrote the same bytes, then a string, then encoded that again).
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(512);
        using (var writer = new System.Text.Json.Utf8JsonWriter(buffer, new System.Text.Json.JsonWriterOptions { Encoder = WireFormat.JsonOptions.Encoder }))
        {
            envelope.WriteTo(writer, WireFormat.JsonOptions);
        }

        return buffer.WrittenSpan.ToArray();
    }
}

internal static partial class FeedLog
{
    [LoggerMessage(EventId = 101, EventName = "FeedOverflow", Level = LogLevel.Warning, Message = "The event feed fell more than {Capacity} events behind the dispatcher and resubscribed; some running updates were lost")]
    public static partial void Overflow(ILogger logger, int capacity);

    [LoggerMessage(EventId = 102, EventName = "EnricherFailed", Level = LogLevel.Error, Message = "Event enricher {Enricher} failed for job {JobId}")]
    public static partial void EnricherFailed(ILogger logger, string enricher, string jobId, Exception exception);

    [LoggerMessage(EventId = 104, EventName = "FeedPumpFailed", Level = LogLevel.Error, Message = "The event feed failed and resubscribed; some running updates were lost")]
    public static partial void PumpFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 103, EventName = "ListenerFailed", Level = LogLevel.Error, Message = "An event feed listener failed")]
    public static partial void ListenerFailed(ILogger logger, Exception exception);
}
