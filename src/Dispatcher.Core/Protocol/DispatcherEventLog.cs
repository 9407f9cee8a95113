using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// Keeps the latest <c>events/dispatcher</c> frames of <see cref="DispatcherEventFeed"/> (numbered by the feed: member <c>seq</c>,
/// 1, 2, 3… for the life of the process, in both shapes) in a buffer bounded by <see cref="DispatcherProtocolOptions.EventReplayCapacity"/>
/// frames and <see cref="DispatcherProtocolOptions.EventReplayBytes"/> bytes, so a subscriber that reconnects can resume
/// after the last number it saw, or learn that it cannot (a <c>gap</c> event).
/// </summary>
/// <remarks>
/// Starts listening on the first subscription; from then on it keeps listening to the feed, so events sent while nobody is
/// connected are still held for the subscriber that comes back. The buffered frames are the ones sent, so replaying costs no copy.
/// </remarks>
internal sealed class DispatcherEventLog : IDisposable
{
    private readonly object _gate = new();
    private readonly object _startGate = new();
    private readonly Queue<SequencedEvent> _buffer = new();
    private readonly int _capacity;
    private readonly long _maxBytes;
    private readonly DispatcherEventFeed _feed;
    private IDisposable? _registration;
    private Cursor[] _live = [];
    private long _bytes;
    private long _head;

    public DispatcherEventLog(DispatcherEventFeed feed, IOptions<DispatcherProtocolOptions> options)
    {
        _capacity = options.Value.EventReplayCapacity;
        _maxBytes = options.Value.EventReplayBytes;
        _feed = feed;
    }

    /// <summary>Gets this process's stream id: sequence numbers from another stream (a restarted server) mean nothing here.</summary>
    public string Stream { get; } = Guid.NewGuid().ToString("N")[..16];

    /// <summary>Gets the latest sequence number given out (0 before the first event).</summary>
    public long Head
    {
        get
        {
            EnsureListening();
            lock (_gate)
            {
                return _head;
            }
        }
    }

    public void Dispose()
    {
        lock (_startGate)
        {
            _registration?.Dispose();
            _registration = null;
        }
    }

    /// <summary>The constructor does no work: the feed (and its dispatcher subscription) starts with the first subscriber.</summary>
    private void EnsureListening()
    {
        if (Volatile.Read(ref _registration) is not null)
        {
            return;
        }

        // Not under _gate: the feed calls Append (which takes _gate) under its own lock, so taking the feed's lock inside _gate
        // could deadlock.
        lock (_startGate)
        {
            if (_registration is null)
            {
                var registration = _feed.Listen(Append, out var last);
                lock (_gate)
                {
                    _head = Math.Max(_head, last);
                }

                Volatile.Write(ref _registration, registration);
            }
        }
    }

    /// <summary>
    /// Starts a subscription. Without <paramref name="since"/> it is live at once; with it, call
    /// <see cref="Cursor.CatchUpAsync"/> to send what was missed, after which it turns live.
    /// </summary>
    /// <param name="since">The last sequence number the subscriber saw, or null for only new events.</param>
    /// <param name="stream">The stream id the subscriber saw it on, or null to trust the number.</param>
    /// <param name="live">Called on the feed's thread for each new event once the cursor is live; must not block.</param>
    public Cursor Subscribe(long? since, string? stream, Action<SequencedEvent> live)
    {
        EnsureListening();
        var cursor = new Cursor(this, live);
        lock (_gate)
        {
            _live = [.. _live, cursor];
            if (since is not { } after)
            {
                cursor.Last = _head;
                cursor.IsLive = true;
            }
            else if ((stream is not null && stream != Stream) || after > _head)
            {
                // Numbers from another stream: the server restarted since the subscriber saw them.
                cursor.Last = after;
                cursor.ForeignStream = true;
            }
            else
            {
                cursor.Last = after;
            }
        }

        return cursor;
    }

    private void Append(DispatcherWireEvent e)
    {
        lock (_gate)
        {
            var sequence = e.Sequence;
            _head = sequence;
            var item = new SequencedEvent(sequence, e, null);
            _buffer.Enqueue(item);
            _bytes += item.Size;
            while (_buffer.Count > 1 && (_buffer.Count > _capacity || _bytes > _maxBytes))
            {
                _bytes -= _buffer.Dequeue().Size;
            }

            foreach (var cursor in _live)
            {
                if (cursor.IsLive && sequence > cursor.Last)
                {
                    cursor.Last = sequence;
                    cursor.Deliver(item);
                }
            }
        }
    }

    /// <summary>The <c>gap</c> event: what was lost, and what to do.</summary>
    private byte[] GapFrame(long since, long resumed, bool foreign)
    {
        var message = foreign
            ? $"Sequence {since} is not from this server's event stream (it restarted): list the jobs again; events after {resumed} follow."
            : $"Events after {since} are no longer held (the server keeps the latest {_capacity} events, at most {_maxBytes} bytes): list the jobs again; events after {resumed} follow.";
        var envelope = WireFormat.Envelope("events", "dispatcher", string.Empty, new JsonObject
        {
            ["state"] = "gap",
            ["since"] = since,
            ["resumed_after"] = resumed,
            ["stream"] = Stream,
            ["action"] = "relist",
            ["message"] = message,
        });
        envelope["seq"] = resumed;
        return Encoding.UTF8.GetBytes(envelope.ToJsonString(WireFormat.JsonOptions));
    }

    private void Remove(Cursor cursor)
    {
        lock (_gate)
        {
            var index = Array.IndexOf(_live, cursor);
            if (index >= 0)
            {
                _live = [.. _live.AsSpan(0, index), .. _live.AsSpan(index + 1)];
            }
        }
    }

    /// <summary>
    /// Reads what follows <paramref name="after"/> into <paramref name="batch"/>; false when the event right after it is no
    /// longer held. Called under the lock.
    /// </summary>
    private bool CopyAfter(long after, List<SequencedEvent> batch, int max)
    {
        if (_buffer.Count == 0 || after >= _head)
        {
            return true;
        }

        var oldest = _buffer.Peek().Sequence;
        if (after + 1 < oldest)
        {
            return false;
        }

        // The buffer holds consecutive numbers, so the start is an offset; Queue has no indexer, so skip (bounded by capacity).
        var skip = after + 1 - oldest;
        foreach (var item in _buffer)
        {
            if (skip-- > 0)
            {
                continue;
            }

            batch.Add(item);
            if (batch.Count == max)
            {
                break;
            }
        }

        return true;
    }

    /// <summary>One subscriber's position in the stream.</summary>
    internal sealed class Cursor(DispatcherEventLog log, Action<SequencedEvent> live) : IDisposable
    {
        private const int BatchSize = 256;

        /// <summary>The last sequence number sent or skipped. Changed under the log's lock once live, only by the catch-up before.</summary>
        public long Last { get; set; }

        public bool IsLive { get; set; }

        public bool ForeignStream { get; set; }

        public string Stream => log.Stream;

        public void Deliver(SequencedEvent item) => live(item);

        /// <summary>
        /// Sends every held event after <see cref="Last"/> through <paramref name="write"/> (which may wait for room: this is
        /// the subscriber's backlog, not the live stream), or a gap event when some are no longer held, then turns live.
        /// </summary>
        public async ValueTask CatchUpAsync(Func<SequencedEvent, CancellationToken, ValueTask> write, CancellationToken cancellationToken)
        {
            var batch = new List<SequencedEvent>(BatchSize);
            while (true)
            {
                SequencedEvent? gap = null;
                lock (log._gate)
                {
                    if (IsLive)
                    {
                        return;
                    }

                    if (ForeignStream || !log.CopyAfter(Last, batch, BatchSize))
                    {
                        gap = new SequencedEvent(log._head, null, log.GapFrame(Last, log._head, ForeignStream));
                        ForeignStream = false;
                        Last = log._head;
                    }
                    else if (batch.Count == 0)
                    {
                        IsLive = true;
                        return;
                    }
                }

                if (gap is not null)
                {
                    await write(gap, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                foreach (var item in batch)
                {
                    await write(item, cancellationToken).ConfigureAwait(false);
                    Last = item.Sequence;
                }

                batch.Clear();
            }
        }

        public void Dispose() => log.Remove(this);
    }
}

/// <summary>A numbered <c>events/dispatcher</c> event; <see cref="Event"/> is null for a <c>gap</c> event, which is <see cref="Gap"/>.</summary>
internal sealed record SequencedEvent(long Sequence, DispatcherWireEvent? Event, byte[]? Gap)
{
    public string Id => Sequence.ToString(CultureInfo.InvariantCulture);

    /// <summary>The bytes this event holds in the buffer (both shapes).</summary>
    public int Size => Event?.Size ?? Gap?.Length ?? 0;

    /// <summary>The frame in a shape, or <see langword="null"/> when that shape sends nothing for this event (a gap goes to both).</summary>
    public ReadOnlyMemory<byte>? FrameFor(DispatcherEventShape shape) => Event is { } e ? e.GetFrame(shape) : Gap;
}
