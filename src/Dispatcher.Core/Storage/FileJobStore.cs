using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Dispatcher.Telemetry;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Storage;

/// <summary>
/// The default store: an append-only journal file, one record per line, each line <c>CRC32 JSON\n</c>. A job's start, process
/// and end records are written into the file by the caller (under a lock, in order with every record before them) before
/// <see cref="AppendAsync"/> returns, and flushed later with the next group. Acknowledged records (an enqueue) are
/// group-committed: a writer thread writes every one queued so far with one write, flushes (fdatasync when asked), then
/// completes all their tasks. Loading streams the file (any size, one record in memory at a time): a line that fails its checksum, is torn,
/// longer than a record can be, or holds impossible content is skipped, every good record after it is kept, and the bad bytes
/// are copied to <c>jobs.journal.damaged-*</c> and logged with their byte offset. A <c>\r\n</c> line end is read as <c>\n</c>.
/// Rewrites stream the records to a temporary file that is flushed and renamed over the journal, so a crash leaves the old or
/// the new journal, never a mix. The directory is created owner-only (0700) and every file owner-only (0600): they hold
/// commands, environment values and output.
/// </summary>
internal sealed partial class FileJobStore : IJobStore
{
    public const string FileName = "jobs.journal";

    private const int ReadChunk = 1 << 20;

    // A damaged stretch is copied aside only up to this size: a hole of gigabytes (a sparse file, a zeroed disk block run) is
    // not worth a second copy; its offset and full length are logged.
    private const long MaxAsideBytesPerStretch = 64L << 20;

    private const UnixFileMode OwnerOnlyFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_scratch;
    private const UnixFileMode OwnerOnlyDirectory = OwnerOnlyFile | UnixFileMode.UserExecute;

    private readonly string _directory;
    private readonly string _path;
    private readonly bool _flushToDisk;
    private readonly long _maxRecordBytes;
    private readonly ILogger _logger;
    private readonly DispatcherMetrics? _metrics;

    // Every write to the journal file, and all the state below up to the writer's own, is under this lock. A record is encoded
    // before it is taken (on the caller's thread), so the lock is held for a copy and at most one write(2): a few microseconds.
    // The flush (fdatasync) is made outside it, so a caller never waits on the disk behind another's flush.
    private readonly object _io = new();
    private FileStream? _file;

    // With fsync on, the journal is written into zeros written ahead of it (PreallocationBytes at a time) and flushed with
    // fdatasync: overwriting allocated blocks changes no metadata, so a flush is one data write and a cache flush, not a
    // file-system journal commit for the new size (measured with dd on this machine: 0.094 ms against 0.138 ms per flush).
    // _allocated is the file's length, zero tail included; _committedLength is where the records end.
    private long _allocated;
    private bool _needsNewline;
    private long _committedLength;

    // Acknowledged records (an enqueue, a queue change) encoded and not yet written: the writer writes them with one write and
    // flushes them; a caller that writes a record of its own (below) writes them first, to keep the order.
    private readonly ArrayBufferWriter<byte> _pending = new(64 * 1024);
    private readonly List<Work> _pendingWorks = [];

    // Acknowledged records not yet flushed, pending or written: what the writer's group commit counts.
    private int _acksWaiting;
    private List<Work> _writtenAcks = [];

    // The writer's own: the lists its last flush completed, cleared and kept for the next swap (no list allocated per flush).
    private List<Work> _spareAcks = [];
    private List<Work> _spareUnflushed = [];

    // Written records that no caller waits on to acknowledge anything (a job's start, its processes, its end): written by the
    // caller's thread before AppendAsync returns, so they are in the file (the page cache survives a kill -9 of the host)
    // before the dispatcher spawns the job; flushed to the disk with the next acknowledged record, or FlushDelay after the
    // first of them. Measured: one fsync per start and per end held a serial queue to about half the spawn rate of this
    // machine (benchmarks/ANALYSIS.md).
    private List<Work> _unflushed = [];
    private long _firstUnflushedAt;

    // The same records written through Write, which returns no task (the dispatcher's own start, process and end records): only
    // counted, pending and then unflushed. A task, its completion at the flush and the dispatcher's ContinueWith that watched it
    // for a failure cost three allocations and a completion per record, three records per job.
    private int _pendingUntracked;
    private int _unflushedUntracked;

    // A queued rewrite (compaction): what it replaces the journal by, and the records written to the old journal since it was
    // queued, which the new journal gets too.
    private Rewrite? _rewrite;

    // The writer: a loop on the thread pool, started with the first record that needs it, released through _signal when
    // _acksWaiting reaches _wakeAt (1 while it is idle, the size of its last group while it gathers one, never while it
    // works), once per wait. On the pool, not a thread of its own: the caller's thread, about to wait, runs the writer's turn
    // next, and the writer's thread runs the callers' continuations after the flush, with no thread woken in between. A
    // dedicated thread (tried) needed a wake-up to start each group and pushed every completion to the pool's global queue:
    // 0.17-0.51x of the flush bound where main made 0.31-0.73x in the same runs (benchmarks/ANALYSIS.md, third round).
    private readonly SemaphoreSlim _signal = new(0);
    private Task? _writer;
    private int _wakeAt = 1;
    private bool _disposed;

    private volatile JobStoreHealth _health = JobStoreHealth.Healthy;
    private Exception? _fault;
    private long _bytesSinceRewrite;
    private long _bytesAtRewrite;
    private int _rewriteQueued;
    private int _compactionSignalled;
    private long _flushes;

    // The writer's own: acknowledged records that its last flush carried (how many callers may come back for the next one), and when.
    private int _lastGroup;
    private long _lastGroupAt;

    /// <summary>Creates the store; no I/O happens until <see cref="LoadAsync"/> or the first write.</summary>
    /// <param name="directory">The data directory.</param>
    /// <param name="flushToDisk">Whether every commit is fsynced.</param>
    /// <param name="logger">The logger.</param>
    /// <param name="metrics">The dispatcher's metrics, or <see langword="null"/>.</param>
    /// <param name="maxOutputCharacters">The dispatcher's output limit per job, which bounds a record's size.</param>
    public FileJobStore(string directory, bool flushToDisk, ILogger logger, DispatcherMetrics? metrics = null, int maxOutputCharacters = 1024 * 1024)
    {
        _metrics = metrics;
        _directory = directory;
        _path = Path.Combine(directory, FileName);
        _flushToDisk = flushToDisk;
        _logger = logger;

        // Output is at most 4 bytes a character in the journal (3 in UTF-8, 4 in base64); commands, environment and framing
        // get generous room on top.
        _maxRecordBytes = Math.Min(int.MaxValue - 1L, (8L * maxOutputCharacters) + (64L << 20));
    }

    /// <inheritdoc />
    public JobStoreHealth Health => _health;

    /// <summary>Gets or sets how many bytes may be appended after a rewrite (beyond what the rewrite wrote) before the store asks for compaction.</summary>
    internal long CompactionBytes { get; set; } = 64L << 20;

    /// <summary>Gets whether enough bytes were appended since the last rewrite that the journal should be compacted; false while one is queued.</summary>
    internal bool WantsCompaction =>
        Volatile.Read(ref _rewriteQueued) == 0 && Interlocked.Read(ref _bytesSinceRewrite) > CompactionBytes + Interlocked.Read(ref _bytesAtRewrite);

    /// <summary>
    /// Gets or sets what the writer calls (on the thread pool, once until the next rewrite is queued) when its writes made
    /// <see cref="WantsCompaction"/> true. The owner checks at each append too, but acknowledged records are written by the
    /// writer, behind the appends: without this, a journal whose last appends crossed the threshold stayed uncompacted until
    /// another record came.
    /// </summary>
    internal Action? CompactionWanted { get; set; }

    /// <summary>
    /// Gets or sets how long a written record that no caller waits on (a job's start, process or end) may wait for the flush of
    /// a later acknowledged record before it is flushed by itself.
    /// </summary>
    internal TimeSpan FlushDelay { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Gets or sets how long the writer waits for the callers of the last flush to come back before it flushes fewer records.</summary>
    internal TimeSpan GatherTimeout { get; set; } = TimeSpan.FromMilliseconds(1);

    /// <summary>Gets or sets how many zero bytes are written ahead of the records at a time (fsync on, enough free space).</summary>
    internal int PreallocationBytes { get; set; } = 1 << 20;

    /// <summary>
    /// Gets or sets the free space of the file system below which the journal grows record by record instead, so that a filling
    /// disk is reported at the first record that does not fit rather than being hidden by the reserve.
    /// </summary>
    internal long PreallocateAboveFreeBytes { get; set; } = 256L << 20;

    /// <summary>Gets how many times the journal was flushed to the disk (fsync).</summary>
    internal long Flushes => Interlocked.Read(ref _flushes);

    /// <summary>
    /// Gets or sets what is called when a record written through <see cref="Write"/> could not be written or flushed (or was
    /// refused): the owner rewrites the journal from its own state once the storage takes records again. May be called under
    /// the store's lock: it may only take note.
    /// </summary>
    internal Action? WriteFailed { get; set; }

    /// <summary>A fault injected by tests into every write (the real one was a 2 GiB buffer overflow in compaction).</summary>
    internal Action? OnCommit { get; set; }

    /// <summary>A test hook called on the writer's thread before each write or flush it makes: a test holds the writer up with it.</summary>
    internal Action? OnWriterTurn { get; set; }

    public async IAsyncEnumerable<JobStoreRecord> LoadAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        EnsureDirectory();
        if (!File.Exists(_path))
        {
            yield break;
        }

        TightenPermissions(_path);
        var reader = new JournalReader(this);
        await using (reader.ConfigureAwait(false))
        {
            while (await reader.NextAsync(cancellationToken).ConfigureAwait(false) is { } record)
            {
                yield return record;
            }
        }
    }

    /// <summary>
    /// Encodes the record on the caller's thread (outside the lock). A record nobody acknowledges (a job's start, process or end),
    /// and any record without fsync, is written before this returns, after every record appended before it; an acknowledged
    /// record is left for the writer, which writes and flushes it with the others of its group.
    /// </summary>
    public Task AppendAsync(JobStoreRecord record)
    {
        if (EncodeOnThisThread(record, out var encoded) is { } unencodable)
        {
            return Task.FromException(unencodable);
        }

        var work = new Work(Acknowledged(record));
        return Add(encoded, work) is { } refused ? Task.FromException(refused) : work.Done.Task;
    }

    /// <summary>
    /// Writes a record that nobody waits on (a job's start, process or end) as <see cref="AppendAsync"/> does, into the file before
    /// it returns and after every record appended before it, but without a task: it is flushed with the next acknowledged record
    /// or <see cref="FlushDelay"/> later, and a failure to write or flush it is reported through <see cref="WriteFailed"/>.
    /// </summary>
    internal void Write(JobStoreRecord record)
    {
        Debug.Assert(!Acknowledged(record), "an acknowledged record needs its task");
        if (EncodeOnThisThread(record, out var encoded) is not null)
        {
            WriteFailed?.Invoke();
            return;
        }

        if (Add(encoded, work: null) is not null)
        {
            WriteFailed?.Invoke();
        }
    }

    /// <summary>Encodes the record into this thread's scratch buffer (outside any lock); returns why it cannot be (logged), or null.</summary>
    private Exception? EncodeOnThisThread(JobStoreRecord record, out ArrayBufferWriter<byte> encoded)
    {
        var scratch = encoded = t_scratch ??= new ArrayBufferWriter<byte>(4096);
        scratch.ResetWrittenCount();
        try
        {
            Encode(record, scratch);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or InvalidOperationException)
        {
            Log.WriteFailed(_logger, _path, ex);
            return ex;
        }
        finally
        {
            if (scratch.Capacity > 1 << 20)
            {
                t_scratch = null; // a finished job's large output is not kept by this thread (the caller still holds this record's)
            }
        }

        return null;
    }

    /// <summary>
    /// Adds an encoded record: an acknowledged one (<paramref name="work"/> acknowledged) is left for the writer, which writes and
    /// flushes it with the others of its group; any other, and any record without fsync, is written now (<paramref name="work"/>
    /// null: a record written through <see cref="Write"/>). Returns why the record was refused, or null.
    /// </summary>
    private Exception? Add(ArrayBufferWriter<byte> encoded, Work? work)
    {
        var acknowledged = work is { Acknowledged: true };
        var wake = false;
        lock (_io)
        {
            if (Refused() is { } refused)
            {
                return refused;
            }

            _pending.Write(encoded.WrittenSpan);
            if (work is not null)
            {
                _pendingWorks.Add(work);
            }
            else
            {
                _pendingUntracked++;
            }

            if (acknowledged)
            {
                // The writer, gathering the callers of its last flush, is woken once when enough have come back, not once per
                // record. Without fsync too: one write for every record queued meanwhile (a write(2) per enqueue, under the
                // dispatcher's lock, held 64 callers to 141 000 enqueues/s in a run where one write per group reached 207 000-282 000/s).
                wake = ++_acksWaiting >= _wakeAt;
                StartWriter();
            }
            else
            {
                var idle = !HasUnflushed && _wakeAt == 1;
                WritePending();
                wake = _flushToDisk && idle && HasUnflushed;
                if (_flushToDisk)
                {
                    StartWriter();
                }
            }

            if (wake)
            {
                _wakeAt = int.MaxValue; // one release per wait
            }
        }

        if (wake && acknowledged && !_flushToDisk)
        {
            // Without fsync nothing is gathered: released from the global queue, the writer runs after the callers already
            // queued there have appended, and writes them together (released at once, it ran right after each caller: one
            // record per write, 110 000-179 000 enqueues/s from 64 callers where main made 228 000-276 000 in the same runs;
            // 155 000-249 000 with this).
            ThreadPool.UnsafeQueueUserWorkItem(static signal => signal.Release(), _signal, preferLocal: false);
        }
        else if (wake)
        {
            _signal.Release();
        }

        return null;
    }

    /// <summary>Whether records are written and not flushed yet. Under the lock.</summary>
    private bool HasUnflushed => _unflushed.Count > 0 || _unflushedUntracked > 0;

    public Task RewriteAsync(IReadOnlyList<JobStoreRecord> records)
    {
        Interlocked.Exchange(ref _rewriteQueued, 1);
        Interlocked.Exchange(ref _compactionSignalled, 0);
        var work = new Work(acknowledged: true);
        lock (_io)
        {
            if (Refused() is { } refused)
            {
                return Task.FromException(refused);
            }

            // Records appended before the rewrite are in its records: written to the old journal now, they stay out of its tail
            // (a record in both would be replayed twice: an enqueue after its own start would make a started job pending).
            WritePending();

            // A later rewrite replaces a queued one: its records already hold what the earlier one would have kept.
            _rewrite ??= new Rewrite();
            _rewrite.Records = records;
            _rewrite.Version++;
            _rewrite.Tail.ResetWrittenCount();
            _rewrite.Works.Add(work);
            StartWriter();
        }

        _signal.Release();
        return work.Done.Task;
    }

    /// <summary>Why a new record is refused (the store stopped, or is disposed), or null. Under the lock.</summary>
    private Exception? Refused() =>
        _fault is { } fault ? Stopped(fault) : _disposed ? new ObjectDisposedException(nameof(FileJobStore)) : null;

    /// <summary>Starts the writer thread if it is not running. Under the lock.</summary>
    private void StartWriter()
    {
        if (_writer is not null)
        {
            return;
        }

        _writer = Task.Run(WriterLoopAsync);
    }

    public async ValueTask DisposeAsync()
    {
        Task? writer;
        lock (_io)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            writer = _writer;
        }

        _signal.Release();
        if (writer is not null)
        {
            await writer.ConfigureAwait(false);
        }

        lock (_io)
        {
            // Without fsync nothing waits for the writer; what a caller left pending (none in practice) is written now.
            WritePending();
            if (_file is null)
            {
                return;
            }

            // A clean stop leaves no zero tail (a crash may: loading reads it as the end).
            if (_allocated > _committedLength && _fault is null)
            {
                try
                {
                    _file.SetLength(_committedLength);
                    Sync(_file);
                }
                catch (IOException ex)
                {
                    Log.WriteFailed(_logger, _path, ex);
                }
            }

            _file.Dispose();
            _file = null;
        }
    }

    private async Task WriterLoopAsync()
    {
        try
        {
            while (true)
            {
                var wait = Timeout.InfiniteTimeSpan;
                var flush = false;
                var rewrite = false;
                lock (_io)
                {
                    _wakeAt = int.MaxValue;
                    if (_fault is not null)
                    {
                        return;
                    }

                    if (_rewrite is not null)
                    {
                        rewrite = true;
                    }
                    else if (_acksWaiting > 0)
                    {
                        // Group commit: the callers that the last flush let go come back with their next records within
                        // microseconds. Waiting for them (woken once when they are back, never spinning, at most GatherTimeout)
                        // lets one flush carry them all; without it the groups alternated between a few records and the rest
                        // (55-77 % of the callers per flush).
                        var left = GatherTimeout - Stopwatch.GetElapsedTime(_lastGroupAt);
                        flush = !_flushToDisk || _acksWaiting >= _lastGroup || left <= TimeSpan.Zero || _disposed;
                        if (!flush)
                        {
                            _wakeAt = _lastGroup;
                            wait = left;
                        }
                    }
                    else if (HasUnflushed || _writtenAcks.Count > 0)
                    {
                        var left = FlushDelay - Stopwatch.GetElapsedTime(_firstUnflushedAt);
                        flush = left <= TimeSpan.Zero || _disposed;
                        if (!flush)
                        {
                            _wakeAt = 1;
                            wait = left;
                        }
                    }
                    else if (_disposed)
                    {
                        return;
                    }
                    else
                    {
                        _wakeAt = 1;
                    }
                }

                if (rewrite)
                {
                    OnWriterTurn?.Invoke();
                    RewriteNow();
                }
                else if (flush)
                {
                    OnWriterTurn?.Invoke();
                    Flush();
                    if (CompactionWanted is { } wanted && WantsCompaction && Interlocked.Exchange(ref _compactionSignalled, 1) == 0)
                    {
                        ThreadPool.UnsafeQueueUserWorkItem(static w => w(), wanted, preferLocal: false);
                    }
                }
                else
                {
                    // A release that came after a timed-out wait leaves a count: the next wait returns at once, and the loop looks again.
                    // Whole milliseconds, rounded up: a wait of 0.9 ms is 0 ms to the semaphore, which returned at once and
                    // turned the gathering into a spin (4.5 million empty waits in one benchmark round).
                    if (wait != Timeout.InfiniteTimeSpan)
                    {
                        wait = TimeSpan.FromMilliseconds(Math.Ceiling(wait.TotalMilliseconds));
                    }

                    await _signal.WaitAsync(wait).ConfigureAwait(false);
                }
            }
        }
#pragma warning disable CA1031 // Whatever went wrong, no caller may wait forever: the store stops and says so.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            lock (_io)
            {
                Fault(ex);
            }
        }
    }

    /// <summary>
    /// Writes what is pending and flushes the file (outside the lock), then completes every record the flush covered: the
    /// acknowledged ones with the written ones that waited for a flush. On the writer's thread.
    /// </summary>
    private void Flush()
    {
        List<Work> acks;
        List<Work> unflushed;
        int untracked;
        FileStream file;
        Microsoft.Win32.SafeHandles.SafeFileHandle? handle = null;
        var refAdded = false;
        var started = Stopwatch.GetTimestamp();
        lock (_io)
        {
            WritePending();
            if (!_flushToDisk)
            {
                _acksWaiting = 0;
                return;
            }

            acks = _writtenAcks;
            unflushed = _unflushed;
            untracked = _unflushedUntracked;
            if (acks.Count == 0 && unflushed.Count == 0 && untracked == 0)
            {
                _acksWaiting = 0;
                return;
            }

            _writtenAcks = _spareAcks;
            _unflushed = _spareUnflushed;
            _unflushedUntracked = 0;
            _acksWaiting = 0;
            try
            {
                // After a failed write the file was closed; fsync through a new handle flushes the same file.
                file = _file ??= OpenJournal();
                if (!OperatingSystem.IsLinux())
                {
                    Sync(file);
                }
                else
                {
                    // Read once: each read of FileStream.SafeFileHandle is an lseek (three per flush before).
                    handle = file.SafeFileHandle;
                    handle.DangerousAddRef(ref refAdded);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Failed(ex, acks, unflushed);
                FailedUntracked(untracked);
                KeepSpare(acks, unflushed);
                return;
            }
        }

        try
        {
            if (refAdded && Dispatcher.Interop.Libc.fdatasync((int)handle!.DangerousGetHandle()) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new IOException($"fdatasync failed: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
            }
        }
        catch (IOException ex)
        {
            lock (_io)
            {
                Failed(ex, acks, unflushed);
                FailedUntracked(untracked);
            }

            KeepSpare(acks, unflushed);
            return;
        }
        finally
        {
            if (refAdded)
            {
                handle!.DangerousRelease();
            }
        }

        Interlocked.Increment(ref _flushes);

        // Every caller this flush lets go, and those that came back while it ran: the next group waits for all of them
        // (counting only the flushed ones kept the groups alternating between a few records and the rest).
        lock (_io)
        {
            _lastGroup = acks.Count + _acksWaiting;
        }

        _lastGroupAt = Stopwatch.GetTimestamp();
        _metrics?.JournalCommitted(acks.Count + unflushed.Count + untracked, Stopwatch.GetElapsedTime(started));
        // The records written before the flush first (they were appended before the acknowledged ones of this group, or with
        // them): a caller resumed by its acknowledgement then finds every earlier record of the flush complete too.
        foreach (var w in unflushed)
        {
            w.Done.TrySetResult();
        }

        foreach (var w in acks)
        {
            w.Done.TrySetResult();
        }

        KeepSpare(acks, unflushed);
    }

    /// <summary>Keeps the lists a flush completed for the next one. On the writer's thread, the only one that swaps them.</summary>
    private void KeepSpare(List<Work> acks, List<Work> unflushed)
    {
        acks.Clear();
        unflushed.Clear();
        _spareAcks = acks;
        _spareUnflushed = unflushed;
    }

    /// <summary>Records written through <see cref="Write"/> were lost (a failed write or flush): the owner is told. Under the lock.</summary>
    private void FailedUntracked(int count)
    {
        if (count > 0)
        {
            WriteFailed?.Invoke();
        }
    }

    /// <summary>
    /// Writes every pending record with one write, after the line end a torn record needs; then a record that waits for a flush
    /// waits for it, any other is complete. A failed write fails only the records it carried. Under the lock.
    /// </summary>
    private void WritePending()
    {
        if (_pendingWorks.Count == 0 && _pendingUntracked == 0)
        {
            return;
        }

        var works = _pendingWorks;
        var untracked = _pendingUntracked;
        var bytes = _pending.WrittenCount;
        var started = Stopwatch.GetTimestamp();
        try
        {
            OnCommit?.Invoke();
            _file ??= OpenJournal();
            var file = _file;
            try
            {
                if (_needsNewline)
                {
                    // The file ended inside a record (a crash during a write): that record stays a damaged line of its own.
                    file.Write("\n"u8);
                    _committedLength++;
                    _allocated = Math.Max(_allocated, _committedLength);
                    _needsNewline = false;
                }

                Reserve(file, _committedLength + bytes);
                file.Write(_pending.WrittenSpan);
            }
            catch (IOException)
            {
                // A partial write (disk full) may have left a torn line: cut it off, so the next record starts on a line of its own.
                _file = null;
                TryTruncate(file);
                throw;
            }

            _committedLength += bytes;
            _allocated = Math.Max(_allocated, _committedLength);
            Interlocked.Add(ref _bytesSinceRewrite, bytes);
            _rewrite?.Tail.Write(_pending.WrittenSpan);
            _health = JobStoreHealth.Healthy;
            if (!_flushToDisk)
            {
                _metrics?.JournalCommitted(works.Count + untracked, Stopwatch.GetElapsedTime(started));
            }
            else if (untracked > 0)
            {
                if (!HasUnflushed)
                {
                    _firstUnflushedAt = Stopwatch.GetTimestamp();
                }

                _unflushedUntracked += untracked;
            }

            foreach (var w in works)
            {
                if (!_flushToDisk)
                {
                    w.Done.TrySetResult();
                }
                else if (w.Acknowledged)
                {
                    _writtenAcks.Add(w);
                }
                else
                {
                    if (!HasUnflushed)
                    {
                        _firstUnflushedAt = Stopwatch.GetTimestamp();
                    }

                    _unflushed.Add(w);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _acksWaiting = Math.Max(0, _acksWaiting - works.Count(w => w.Acknowledged));
            Failed(ex, works);
            FailedUntracked(untracked);
        }
#pragma warning disable CA1031 // An error no write path expects: the store stops and says so, and no caller waits forever.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            FailedUntracked(untracked);
            Fault(ex, works);
        }
        finally
        {
            _pendingWorks.Clear();
            _pendingUntracked = 0;
            _pending.ResetWrittenCount();
        }
    }

    /// <summary>A write or flush failed (full or read-only storage): its records fail with the reason, the store is degraded. Under the lock.</summary>
    private void Failed(Exception ex, params IEnumerable<Work>[] works)
    {
        var described = Describe(ex);
        Log.WriteFailed(_logger, _path, described);
        _health = new JobStoreHealth(JobStoreStatus.Degraded, described.Message);
        foreach (var list in works)
        {
            foreach (var w in list)
            {
                w.Done.TrySetException(described);
            }
        }
    }

    /// <summary>An unexpected error: the store stops, everything waiting fails, every later record is refused. Under the lock.</summary>
    private void Fault(Exception ex, IEnumerable<Work>? carried = null)
    {
        if (_fault is null)
        {
            Log.WriterFailed(_logger, _path, ex);
            _fault = ex;
            _health = new JobStoreHealth(JobStoreStatus.Failed, $"The job journal {_path} stopped after an unexpected error: {ex.Message}");
        }

        var stopped = Stopped(_fault);
        FailedUntracked(_pendingUntracked + _unflushedUntracked);
        _unflushedUntracked = 0;
        IEnumerable<Work> all = [.. carried ?? [], .. _pendingWorks, .. _writtenAcks, .. _unflushed, .. _rewrite?.Works ?? []];
        foreach (var w in all)
        {
            w.Done.TrySetException(stopped);
        }

        _writtenAcks.Clear();
        _unflushed.Clear();
        _rewrite = null;
        _acksWaiting = 0;
        _signal.Release();
    }

    /// <summary>Whether a caller waits on the record to acknowledge something, so that it must be flushed before its task completes.</summary>
    internal static bool Acknowledged(JobStoreRecord record) => record is not (JobStartedRecord or JobProcessStartedRecord or JobFinishedRecord);

    private static InvalidOperationException Stopped(Exception fault) =>
        new($"The job store stopped after an unexpected error and accepts no records until the host restarts: {fault.Message}", fault);

    /// <summary>
    /// Opens the journal for writing at the end of its records: before a zero tail that preallocation left (a crash skips the
    /// truncation of a clean stop), and after a line that a crash left unfinished, which gets its line end first.
    /// </summary>
    private FileStream OpenJournal()
    {
        EnsureDirectory();
        var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.Read, BufferSize = 0 };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerOnlyFile;
        }

        var file = new FileStream(_path, options);
        try
        {
            _allocated = file.Length;
            _committedLength = EndOfRecords(file.SafeFileHandle, _allocated);
            _needsNewline = _committedLength > 0 && ByteAt(file.SafeFileHandle, _committedLength - 1) != (byte)'\n';
            file.Position = _committedLength;
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Where the records end: after the last byte that is not zero (a record never holds a zero byte: JSON escapes it).</summary>
    internal static long EndOfRecords(Microsoft.Win32.SafeHandles.SafeFileHandle file, long length)
    {
        var block = new byte[64 * 1024];
        var end = length;
        while (end > 0)
        {
            var start = Math.Max(0, end - block.Length);
            var span = block.AsSpan(0, (int)(end - start));
            RandomAccess.Read(file, span, start);
            var last = span.LastIndexOfAnyExcept((byte)0);
            if (last >= 0)
            {
                return start + last + 1;
            }

            end = start;
        }

        return 0;
    }

    private static byte ByteAt(Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset)
    {
        Span<byte> one = stackalloc byte[1];
        return RandomAccess.Read(file, one, offset) == 1 ? one[0] : (byte)0;
    }

    private static readonly byte[] s_zeros = new byte[64 * 1024];

    /// <summary>
    /// Makes the file at least <paramref name="needed"/> bytes long, with <see cref="PreallocationBytes"/> of zeros beyond, when
    /// fsync is on and the file system has room to spare; otherwise the write itself extends the file.
    /// </summary>
    private void Reserve(FileStream file, long needed)
    {
        if (!_flushToDisk || needed <= _allocated || PreallocationBytes <= 0 || FreeBytes() < PreallocateAboveFreeBytes)
        {
            return;
        }

        var target = needed + PreallocationBytes;
        var handle = file.SafeFileHandle;
        try
        {
            for (var at = _allocated; at < target; at += s_zeros.Length)
            {
                RandomAccess.Write(handle, s_zeros.AsSpan(0, (int)Math.Min(s_zeros.Length, target - at)), at);
            }

            _allocated = target;
        }
        catch (IOException)
        {
            // No room for the reserve: it is given back, and the records are written without one.
            file.SetLength(Math.Max(_allocated, _committedLength));
        }
    }

    private long FreeBytes()
    {
        try
        {
            return new DriveInfo(_directory).AvailableFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return 0;
        }
    }

    /// <summary>Flushes the written records to the disk: fdatasync on Linux (what reads the records back), fsync elsewhere.</summary>
    private static void Sync(FileStream file)
    {
        if (!OperatingSystem.IsLinux())
        {
            file.Flush(flushToDisk: true);
            return;
        }

        var success = false;
        var handle = file.SafeFileHandle;
        handle.DangerousAddRef(ref success);
        try
        {
            if (Dispatcher.Interop.Libc.fdatasync((int)handle.DangerousGetHandle()) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new IOException($"fdatasync failed: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
            }
        }
        finally
        {
            if (success)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>Cuts what a failed write left after the last whole record (a torn line), so the next record starts on a line of its own.</summary>
    private void TryTruncate(FileStream file)
    {
        try
        {
            file.SetLength(_committedLength);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Left as it is: loading skips a torn line and keeps the records after it.
        }
        finally
        {
            try
            {
                file.Dispose();
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>An exception whose message says what is wrong with the storage (full, read-only), in words an operator acts on.</summary>
    private IOException Describe(Exception ex)
    {
        var what = ex switch
        {
            IOException io when io.HResult is 28 or 122 || ex.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase) =>
                "the storage is full",
            IOException io when io.HResult == 30 || ex.Message.Contains("Read-only file system", StringComparison.OrdinalIgnoreCase) =>
                "the storage is read-only",
            UnauthorizedAccessException => "the storage is read-only or not writable by this process",
            _ => "the write failed",
        };
        return new IOException($"The job journal {_path} could not be written: {what} ({ex.Message}).", ex) { HResult = ex.HResult };
    }

    /// <summary>
    /// Replaces the journal by the queued rewrite's records, streamed to a temporary file (outside the lock: callers keep
    /// writing to the old journal meanwhile); then, under the lock, the records written since the rewrite was queued are added,
    /// the file is flushed and renamed over the journal, so a crash leaves the old or the new journal, never a mix, and neither
    /// misses a record. On the writer's thread.
    /// </summary>
    private void RewriteNow()
    {
        var temp = _path + ".tmp";
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        while (true)
        {
            Rewrite r;
            int version;
            IReadOnlyList<JobStoreRecord> records;
            lock (_io)
            {
                if (_rewrite is null)
                {
                    return;
                }

                r = _rewrite;
                version = r.Version;
                records = r.Records;
            }

            FileStream? file = null;
            try
            {
                long written = 0;
                file = Open(temp, FileMode.Create);

                // One record at a time: the journal may be larger than any one buffer can be.
                foreach (var record in records)
                {
                    buffer.ResetWrittenCount();
                    try
                    {
                        Encode(record, buffer);
                    }
                    catch (Exception ex) when (ex is ArgumentException or NotSupportedException or InvalidOperationException)
                    {
                        Log.WriteFailed(_logger, _path, ex);
                        continue;
                    }

                    file.Write(buffer.WrittenSpan);
                    written += buffer.WrittenCount;
                }

                lock (_io)
                {
                    if (_rewrite == r && r.Version == version)
                    {
                        OnCommit?.Invoke();
                        WritePending();
                        file.Write(r.Tail.WrittenSpan);
                        written += r.Tail.WrittenCount;

                        // The one flush made under the lock: callers wait for it once per compaction.
                        file.Flush(_flushToDisk);
                        file.Dispose();
                        File.Move(temp, _path, overwrite: true);
                        _file?.Dispose();
                        _file = null; // reopened at the end of the new journal's records

                        // What the old journal held unflushed is in the new one, flushed.
                        if (_flushToDisk)
                        {
                            foreach (var w in (List<Work>)[.. _writtenAcks, .. _unflushed])
                            {
                                w.Done.TrySetResult();
                            }

                            _writtenAcks.Clear();
                            _unflushed.Clear();
                            _unflushedUntracked = 0;
                            _acksWaiting = 0;
                        }

                        Interlocked.Exchange(ref _bytesSinceRewrite, 0);
                        Interlocked.Exchange(ref _bytesAtRewrite, written);
                        Interlocked.Exchange(ref _rewriteQueued, 0);
                        _rewrite = null;
                        _health = JobStoreHealth.Healthy;
                        foreach (var w in r.Works)
                        {
                            w.Done.TrySetResult();
                        }

                        return;
                    }
                }

                // A newer rewrite was queued meanwhile: it is written instead.
                file.Dispose();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                try
                {
                    // Disposing writes what the file's buffer holds: on a full disk it fails again.
                    file?.Dispose();
                }
                catch (IOException)
                {
                }

                TryDelete(temp);
                lock (_io)
                {
                    if (_rewrite == r)
                    {
                        _rewrite = null;
                        Interlocked.Exchange(ref _rewriteQueued, 0);
                    }

                    Failed(ex, r.Works);
                }

                return;
            }
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private FileStream Open(string path, FileMode mode)
    {
        EnsureDirectory();
        var options = new FileStreamOptions { Mode = mode, Access = FileAccess.Write, Share = mode == FileMode.Append ? FileShare.Read : FileShare.None, BufferSize = mode == FileMode.Append ? 1 : 64 * 1024 };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = OwnerOnlyFile;
        }

        return new FileStream(path, options);
    }

    private void EnsureDirectory()
    {
        if (Directory.Exists(_directory))
        {
            return;
        }

        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(_directory);
        }
        else
        {
            Directory.CreateDirectory(_directory, OwnerOnlyDirectory);
        }
    }

    /// <summary>A journal written by an older version (0644) is made owner-only: it holds environment values and output.</summary>
    private void TightenPermissions(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            if ((File.GetUnixFileMode(path) & ~OwnerOnlyFile) != 0)
            {
                File.SetUnixFileMode(path, File.GetUnixFileMode(path) & OwnerOnlyFile);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.WriteFailed(_logger, path, ex);
        }
    }

    internal static byte[] Encode(JobStoreRecord record)
    {
        var buffer = new ArrayBufferWriter<byte>();
        Encode(record, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Appends <c>CRC32 JSON\n</c> to <paramref name="buffer"/>.</summary>
    internal static void Encode(JobStoreRecord record, ArrayBufferWriter<byte> buffer)
    {
        var start = buffer.WrittenCount;
        buffer.Write("00000000 "u8);

        // One writer per thread (in practice the store's writer thread), reset onto each buffer: no allocation per record.
        var writer = t_writer;
        if (writer is null)
        {
            t_writer = writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        }
        else
        {
            writer.Reset(buffer);
        }

        try
        {
            if (!TryWriteDirect(writer, record))
            {
                JsonSerializer.Serialize(writer, StoredRecord.From(record), StoreJsonContext.Default.StoredRecord);
            }

            writer.Flush();
        }
        finally
        {
            // Not disposed (it is reused); detached from the buffer so the buffer is not kept alive by this thread.
            writer.Reset(Stream.Null);
        }

        var json = buffer.WrittenSpan[(start + 9)..];
        var crc = Crc32.HashToUInt32(json);
        buffer.Write("\n"u8);

        // The header is written over its placeholder: the span is the buffer's own memory.
        var header = MemoryMarshal.AsMemory(buffer.WrittenMemory).Span.Slice(start, 8);
        _ = crc.TryFormat(header, out _, "x8", CultureInfo.InvariantCulture);
    }

    /// <summary>Appends <c>CRC32 JSON\n</c> always through <see cref="StoredRecord"/> (the shape <see cref="TryWriteDirect"/> must match; for tests).</summary>
    internal static void EncodeThroughStoredRecord(JobStoreRecord record, ArrayBufferWriter<byte> buffer)
    {
        var start = buffer.WrittenCount;
        buffer.Write("00000000 "u8);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            JsonSerializer.Serialize(writer, StoredRecord.From(record), StoreJsonContext.Default.StoredRecord);
        }

        var crc = Crc32.HashToUInt32(buffer.WrittenSpan[(start + 9)..]);
        buffer.Write("\n"u8);
        _ = crc.TryFormat(MemoryMarshal.AsMemory(buffer.WrittenMemory).Span.Slice(start, 8), out _, "x8", CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Writes the most frequent records (a job's start and process, and an enqueue that uses none of the rarer fields) straight
    /// to the writer, in exactly the JSON that <see cref="StoredRecord"/> gives them (members in its order, nulls left out;
    /// <c>JournalEncodingTests</c> compares the two): without the 456-byte <see cref="StoredRecord"/> per record, which was
    /// where the garbage collections of a stream of enqueues started (a profile of 16 fsync'd callers: 1.3 µs per enqueue in
    /// <see cref="StoredRecord.From"/>, most of it the collector). Returns false for any other record.
    /// </summary>
    private static bool TryWriteDirect(Utf8JsonWriter writer, JobStoreRecord record)
    {
        switch (record)
        {
            case JobStartedRecord s:
                writer.WriteStartObject();
                writer.WriteString("Kind"u8, "started"u8);
                writer.WriteString("Id"u8, s.Id);
                writer.WriteString("At"u8, s.StartedAt);
                writer.WriteBoolean("RerunIfInterrupted"u8, false);
                writer.WriteEndObject();
                return true;
            case JobProcessStartedRecord p:
                writer.WriteStartObject();
                writer.WriteString("Kind"u8, "process"u8);
                writer.WriteString("Id"u8, p.Id);
                writer.WriteBoolean("RerunIfInterrupted"u8, false);
                writer.WriteNumber("Index"u8, p.CommandIndex);
                writer.WriteNumber("Pid"u8, p.ProcessId);
                writer.WriteNumber("PidStart"u8, p.ProcessStartTime);
                if (p.BootId is { } boot)
                {
                    writer.WriteString("Boot"u8, boot);
                }

                writer.WriteEndObject();
                return true;
            case JobEnqueuedRecord { Request: var r } e when r.Environment is null && r.After is not { Count: > 0 } && r.Delay is null
                && r.StartAt is null && r.Retry is null && r.Labels is null && r.ArgumentVectors is null && r.Limits is null && r.RunAs is null:
                WriteStart(writer, "enqueued"u8, r.Id, e.EnqueuedAt, r.Queue, r.Commands);
                if (r.WorkingDirectory is { } directory)
                {
                    writer.WriteString("WorkingDirectory"u8, directory);
                }

                if (r.Timeout is { } timeout)
                {
                    writer.WriteNumber("TimeoutSeconds"u8, timeout.TotalSeconds);
                }

                writer.WriteBoolean("RerunIfInterrupted"u8, r.RerunIfInterrupted);
                if (r.Priority != 0)
                {
                    writer.WriteNumber("Priority"u8, r.Priority);
                }

                if (r.StandardInput is { } stdin)
                {
                    writer.WriteString("Stdin"u8, stdin);
                }

                if (r.IdempotencyKey is { } key)
                {
                    writer.WriteString("IdempotencyKey"u8, key);
                }

                writer.WriteEndObject();
                return true;
            case JobFinishedRecord { Result: var result } when result.PreviousAttempts.Count == 0 && result.Labels is null
                && OutcomeName(result.Outcome) is { Length: > 0 } outcome:
                WriteFinished(writer, result, outcome);
                return true;
            default:
                return false;
        }
    }

    /// <summary>The name the string enum converter writes for a defined outcome; empty for any other value (the general path writes it).</summary>
    private static ReadOnlySpan<byte> OutcomeName(JobOutcome outcome) => outcome switch
    {
        JobOutcome.Succeeded => "Succeeded"u8,
        JobOutcome.Failed => "Failed"u8,
        JobOutcome.Killed => "Killed"u8,
        JobOutcome.TimedOut => "TimedOut"u8,
        JobOutcome.Interrupted => "Interrupted"u8,
        JobOutcome.Skipped => "Skipped"u8,
        JobOutcome.OomKilled => "OomKilled"u8,
        _ => default,
    };

    /// <summary>Opens a directly written record: its kind, the job's id, the record's time, the queue and the commands.</summary>
    private static void WriteStart(Utf8JsonWriter writer, ReadOnlySpan<byte> kind, string id, DateTimeOffset at, string queue, IReadOnlyList<string> commands)
    {
        writer.WriteStartObject();
        writer.WriteString("Kind"u8, kind);
        writer.WriteString("Id"u8, id);
        writer.WriteString("At"u8, at);
        writer.WriteString("Queue"u8, queue);
        writer.WriteStartArray("Commands"u8);
        foreach (var command in commands)
        {
            writer.WriteStringValue(command);
        }

        writer.WriteEndArray();
    }

    /// <summary>
    /// A job's end record (one attempt, no labels) in exactly the JSON of <see cref="StoredRecord"/> and <see cref="StoredCommand"/>.
    /// It is written under the dispatcher's lock on the thread that reaps the job, before the next job's start: through the general
    /// path it took 10.5 µs of that thread's CPU per job (a profile of the sample host's serial round, journal without fsync), the
    /// most of any journal step there.
    /// </summary>
    private static void WriteFinished(Utf8JsonWriter writer, JobResult result, ReadOnlySpan<byte> outcome)
    {
        WriteStart(writer, "finished"u8, result.Id, result.FinishedAt, result.Queue, result.Commands);
        writer.WriteBoolean("RerunIfInterrupted"u8, false);
        writer.WriteString("Outcome"u8, outcome);
        writer.WriteString("EnqueuedAt"u8, result.EnqueuedAt);
        if (result.StartedAt is { } started)
        {
            writer.WriteString("StartedAt"u8, started);
        }

        writer.WriteStartArray("Results"u8);
        foreach (var c in result.CommandResults)
        {
            writer.WriteStartObject();
            var base64 = StoredCommand.EscapesHeavily(c.Output);
            if (!base64)
            {
                writer.WriteString("Output"u8, c.Output);
            }

            writer.WriteNumber("Dropped"u8, c.DroppedOutputCharacters);
            writer.WriteNumber("ExitCode"u8, c.ExitCode);
            writer.WriteString("StartedAt"u8, c.StartedAt);
            writer.WriteString("FinishedAt"u8, c.FinishedAt);
            if (base64)
            {
                writer.WriteBase64String("Utf8"u8, Encoding.UTF8.GetBytes(c.Output));
            }

            if (c.Usage is { } usage)
            {
                writer.WriteStartArray("Usage"u8);
                writer.WriteNumberValue(usage.UserCpuTime.Ticks / TimeSpan.TicksPerMicrosecond);
                writer.WriteNumberValue(usage.SystemCpuTime.Ticks / TimeSpan.TicksPerMicrosecond);
                if (usage.PeakMemoryBytes is { } peak)
                {
                    writer.WriteNumberValue(peak);
                }

                writer.WriteEndArray();
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        if (result.IdempotencyKey is { } key)
        {
            writer.WriteString("IdempotencyKey"u8, key);
        }

        if (result.Attempt != 1)
        {
            writer.WriteNumber("Attempt"u8, result.Attempt);
        }

        writer.WriteEndObject();
    }

    internal static bool TryDecode(ReadOnlySpan<byte> line, out JobStoreRecord record, out string problem)
    {
        record = null!;
        if (line.Length > 0 && line[^1] == (byte)'\r')
        {
            line = line[..^1];
        }

        if (line.Length < 10 || line[8] != (byte)' '
            || !uint.TryParse(line[..8], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var crc))
        {
            problem = "malformed record header";
            return false;
        }

        var json = line[9..];
        if (Crc32.HashToUInt32(json) != crc)
        {
            problem = "checksum mismatch";
            return false;
        }

        try
        {
            var stored = JsonSerializer.Deserialize(json, StoreJsonContext.Default.StoredRecord);
            if (stored?.ToRecord() is { } r)
            {
                record = r;
                problem = string.Empty;
                return true;
            }

            problem = "impossible record content (unknown kind, a missing id, field or command, or more results than commands)";
            return false;
        }
        catch (JsonException ex)
        {
            problem = "unreadable record: " + ex.Message;
            return false;
        }
        catch (Exception ex) when (ex is ArgumentException or OverflowException or FormatException or InvalidOperationException)
        {
            problem = "impossible record content: " + ex.Message;
            return false;
        }
    }

    /// <summary>Streams the journal line by line; damaged stretches are skipped, copied aside and logged.</summary>
    private sealed class JournalReader(FileJobStore store) : IAsyncDisposable
    {
        private readonly FileStream _file = new(store._path, new FileStreamOptions
        {
            Mode = FileMode.Open,
            Access = FileAccess.Read,
            Share = FileShare.ReadWrite,
            BufferSize = 0,
            Options = FileOptions.Asynchronous | FileOptions.SequentialScan,
        });

        private readonly byte[] _chunk = new byte[ReadChunk];
        private readonly ArrayBufferWriter<byte> _line = new(64 * 1024);
        private int _chunkStart;
        private int _chunkEnd;
        private long _chunkOffset;
        private long _lineNumber;
        private long _good;
        private long _damagedRecords;
        private FileStream? _aside;
        private string? _asidePath;
        private Stretch? _stretch;

        public async ValueTask<JobStoreRecord?> NextAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                // Zero bytes where a line starts: at the end of the file, the tail that preallocation wrote ahead of the records
                // (left by a crash; a clean stop cuts it off), so the end of the journal; before more data, a hole (a sparse
                // region, a write the crash left unfinished), skipped as damage.
                var (zeros, zerosOffset, atEnd) = await SkipZerosAsync(cancellationToken).ConfigureAwait(false);
                if (zeros > 0 && !atEnd)
                {
                    Damage(zerosOffset, "zero bytes (a hole, or a write a crash left unfinished)", ReadOnlySpan<byte>.Empty, alreadyAside: true);
                    _stretch!.Bytes += zeros;
                }

                var (complete, lineOffset, tooLong) = await ReadLineAsync(cancellationToken).ConfigureAwait(false);
                if (!complete && _line.WrittenCount == 0 && !tooLong)
                {
                    EndStretch();
                    store.Log_Loaded(_good, _damagedRecords, _asidePath);
                    return null;
                }

                _lineNumber++;
                if (tooLong)
                {
                    Damage(lineOffset, $"record longer than {store._maxRecordBytes} bytes", ReadOnlySpan<byte>.Empty, alreadyAside: true);
                    continue;
                }

                if (!complete)
                {
                    Damage(lineOffset, "torn record (no end of line)", _line.WrittenSpan, alreadyAside: false);
                    _line.ResetWrittenCount();
                    continue;
                }

                if (TryDecode(_line.WrittenSpan, out var record, out var problem))
                {
                    _line.ResetWrittenCount();
                    EndStretch();
                    _good++;
                    return record;
                }

                var bytes = _line.WrittenSpan;
                Damage(lineOffset, problem, bytes, alreadyAside: false, newline: true);
                _line.ResetWrittenCount();
            }
        }

        /// <summary>Reads the next chunk of the file when the current one is used up; false at the end of the file.</summary>
        private async ValueTask<bool> FillAsync(CancellationToken cancellationToken)
        {
            if (_chunkStart < _chunkEnd)
            {
                return true;
            }

            _chunkOffset += _chunkEnd;
            _chunkStart = 0;
            _chunkEnd = await _file.ReadAsync(_chunk, cancellationToken).ConfigureAwait(false);
            return _chunkEnd > 0;
        }

        /// <summary>Skips the zero bytes at the current position: how many, where they began, and whether the file ends with them.</summary>
        private async ValueTask<(long Zeros, long Offset, bool AtEnd)> SkipZerosAsync(CancellationToken cancellationToken)
        {
            var offset = _chunkOffset + _chunkStart;
            long zeros = 0;
            while (true)
            {
                if (!await FillAsync(cancellationToken).ConfigureAwait(false))
                {
                    return (zeros, offset, true);
                }

                var span = _chunk.AsSpan(_chunkStart, _chunkEnd - _chunkStart);
                var other = span.IndexOfAnyExcept((byte)0);
                if (other < 0)
                {
                    zeros += span.Length;
                    _chunkStart = _chunkEnd;
                    continue;
                }

                zeros += other;
                _chunkStart += other;
                return (zeros, offset, false);
            }
        }

        /// <summary>
        /// Reads up to the next <c>\n</c> into <see cref="_line"/>. A line longer than a record can be is not kept: its first
        /// bytes go aside, the rest is skipped.
        /// </summary>
        private async ValueTask<(bool Complete, long Offset, bool TooLong)> ReadLineAsync(CancellationToken cancellationToken)
        {
            var offset = _chunkOffset + _chunkStart;
            var tooLong = false;
            long skipped = 0;
            while (true)
            {
                if (!await FillAsync(cancellationToken).ConfigureAwait(false))
                {
                    if (tooLong)
                    {
                        store.Log_TooLong(offset, skipped);
                    }

                    return (false, offset, tooLong);
                }

                var span = _chunk.AsSpan(_chunkStart, _chunkEnd - _chunkStart);
                var end = span.IndexOf((byte)'\n');
                var part = end < 0 ? span : span[..(end + 1)];
                _chunkStart += part.Length;
                if (!tooLong && _line.WrittenCount + part.Length > store._maxRecordBytes)
                {
                    tooLong = true;
                    StartStretch(offset, _lineNumber + 1, "record too long");
                    WriteAside(_line.WrittenSpan);
                    skipped = _line.WrittenCount;
                    _line.ResetWrittenCount();
                }

                if (tooLong)
                {
                    WriteAside(part);
                    skipped += part.Length;
                }
                else
                {
                    _line.Write(end < 0 ? part : part[..^1]);
                }

                if (end >= 0)
                {
                    if (tooLong)
                    {
                        store.Log_TooLong(offset, skipped);
                    }

                    return (true, offset, tooLong);
                }
            }
        }

        private void Damage(long offset, string problem, ReadOnlySpan<byte> bytes, bool alreadyAside, bool newline = false)
        {
            _damagedRecords++;
            StartStretch(offset, _lineNumber, problem);
            if (!alreadyAside)
            {
                WriteAside(bytes);
                if (newline)
                {
                    WriteAside("\n"u8);
                }
            }

            _stretch!.Records++;
        }

        private void StartStretch(long offset, long line, string problem)
        {
            _stretch ??= new Stretch(offset, line, problem);
        }

        private void EndStretch()
        {
            if (_stretch is not { } s)
            {
                return;
            }

            _stretch = null;
            Log.Damaged(store._logger, store._path, s.Offset, s.Line, s.Problem, s.Records, s.Bytes, _asidePath ?? "(nowhere)");
        }

        private void WriteAside(ReadOnlySpan<byte> bytes)
        {
            if (_stretch is not { } s || bytes.IsEmpty)
            {
                return;
            }

            s.Bytes += bytes.Length;
            var room = MaxAsideBytesPerStretch - s.Copied;
            if (room <= 0)
            {
                return;
            }

            try
            {
                if (_aside is null)
                {
                    _asidePath = store._path + ".damaged-" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
                    _aside = store.Open(_asidePath, FileMode.Append);
                }

                var part = bytes.Length > room ? bytes[..(int)room] : bytes;
                _aside.Write(part);
                s.Copied += part.Length;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The damage is still skipped and logged; only its copy is missing.
                Log.WriteFailed(store._logger, _asidePath ?? store._path, ex);
                s.Copied = MaxAsideBytesPerStretch;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _file.DisposeAsync().ConfigureAwait(false);
            if (_aside is not null)
            {
                try
                {
                    _aside.Flush(store._flushToDisk);
                }
                catch (IOException)
                {
                }

                await _aside.DisposeAsync().ConfigureAwait(false);
            }
        }

        private sealed class Stretch(long offset, long line, string problem)
        {
            public long Offset { get; } = offset;

            public long Line { get; } = line;

            public string Problem { get; } = problem;

            public long Records { get; set; }

            public long Bytes { get; set; }

            public long Copied { get; set; }
        }
    }

    private void Log_Loaded(long good, long damaged, string? aside)
    {
        if (damaged > 0)
        {
            Log.DamageSummary(_logger, _path, good, damaged, aside ?? "(nowhere)");
        }
    }

    private void Log_TooLong(long offset, long bytes) => Log.TooLong(_logger, _path, offset, bytes, _maxRecordBytes);

    private sealed class Work(bool acknowledged)
    {
        public bool Acknowledged { get; } = acknowledged;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>A queued rewrite: the records it keeps, the records written since it was queued, and who waits for it.</summary>
    private sealed class Rewrite
    {
        public IReadOnlyList<JobStoreRecord> Records { get; set; } = [];

        public int Version { get; set; }

        public ArrayBufferWriter<byte> Tail { get; } = new(64 * 1024);

        public List<Work> Works { get; } = [];
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 401, EventName = "JournalDamaged", Level = LogLevel.Error,
            Message = "Job journal {Path} is damaged at byte {Offset} (line {Line}): {Problem}. {Records} record(s), {Bytes} byte(s) skipped and copied to {Aside}; the good records after them are kept")]
        public static partial void Damaged(ILogger logger, string path, long offset, long line, string problem, long records, long bytes, string aside);

        [LoggerMessage(EventId = 402, EventName = "JournalWriteFailed", Level = LogLevel.Error, Message = "Writing the job journal {Path} failed")]
        public static partial void WriteFailed(ILogger logger, string path, Exception exception);

        [LoggerMessage(EventId = 403, EventName = "JournalWriterFailed", Level = LogLevel.Critical,
            Message = "The job journal writer for {Path} stopped after an unexpected error; every new job is rejected until the host restarts")]
        public static partial void WriterFailed(ILogger logger, string path, Exception exception);

        [LoggerMessage(EventId = 404, EventName = "JournalRecovered", Level = LogLevel.Warning,
            Message = "Job journal {Path}: {Good} good record(s) recovered, {Damaged} damaged record(s) skipped (copied to {Aside})")]
        public static partial void DamageSummary(ILogger logger, string path, long good, long damaged, string aside);

        [LoggerMessage(EventId = 405, EventName = "JournalRecordTooLong", Level = LogLevel.Error,
            Message = "Job journal {Path}: the line at byte {Offset} is {Bytes} byte(s) long, more than a record can be ({Max}); it was skipped without being read into memory")]
        public static partial void TooLong(ILogger logger, string path, long offset, long bytes, long max);
    }
}

/// <summary>The journal's JSON shape of a record: one flat object with a kind (members a record does not use are left out).</summary>
internal sealed record StoredRecord(
    string Kind,
    string Id,
    DateTimeOffset? At = null,
    string? Queue = null,
    IReadOnlyList<string>? Commands = null,
    string? WorkingDirectory = null,
    IReadOnlyDictionary<string, string>? Environment = null,
    double? TimeoutSeconds = null,
    bool RerunIfInterrupted = false,
    JobOutcome? Outcome = null,
    DateTimeOffset? EnqueuedAt = null,
    DateTimeOffset? StartedAt = null,
    IReadOnlyList<StoredCommand>? Results = null,
    int? Index = null,
    int? Pid = null,
    ulong? PidStart = null,
    string? Boot = null,
    JobLimits? Limits = null,
    string? RunAs = null)
{
    public int? Priority { get; init; }

    public IReadOnlyList<IReadOnlyList<string>?>? Argv { get; init; }

    public string? Stdin { get; init; }

    public string? IdempotencyKey { get; init; }

    public IReadOnlyList<string>? After { get; init; }

    public double? DelaySeconds { get; init; }

    public DateTimeOffset? StartAt { get; init; }

    public int? RetryCount { get; init; }

    public double? RetryDelaySeconds { get; init; }

    public double? RetryBackoff { get; init; }

    public IReadOnlyDictionary<string, string>? Labels { get; init; }

    public int? Attempt { get; init; }

    public IReadOnlyList<StoredRecord>? Previous { get; init; }

    public DateTimeOffset? NotBefore { get; init; }

    public int? Limit { get; init; }

    public bool? Paused { get; init; }

    public bool? Draining { get; init; }

    public string? Cron { get; init; }

    public string? TimeZone { get; init; }

    public DateTimeOffset? LastOccurrence { get; init; }

    public static StoredRecord From(JobStoreRecord record) => record switch
    {
        JobEnqueuedRecord e => FromRequest("enqueued", e.Request.Id, e.Request, e.EnqueuedAt),
        JobStartedRecord s => new("started", s.Id, s.StartedAt),
        JobProcessStartedRecord p => new("process", p.Id, Index: p.CommandIndex, Pid: p.ProcessId, PidStart: p.ProcessStartTime, Boot: p.BootId),
        JobFinishedRecord f => FromResult("finished", f.Result),
        JobRetryScheduledRecord r => FromResult("retry", r.Attempt) with { NotBefore = r.NotBefore },
        QueueStateRecord q => new("queue", q.Queue) { Limit = q.Limit, Paused = q.Paused, Draining = q.Draining },
        RecurrenceRecord r => FromRequest("recurrence", r.Recurrence.Id, r.Recurrence.Job, r.CreatedAt) with
        {
            Cron = r.Recurrence.Cron,
            TimeZone = r.Recurrence.TimeZone,
            LastOccurrence = r.LastOccurrence,
        },
        RecurrenceRemovedRecord r => new("recurrence_removed", r.RecurrenceId),
        _ => throw new ArgumentException($"Unknown record type {record.GetType().Name}.", nameof(record)),
    };

    private static StoredRecord FromRequest(string kind, string id, JobRequest r, DateTimeOffset at) =>
        new(kind, id, at, r.Queue, r.Commands, r.WorkingDirectory, r.Environment, r.Timeout?.TotalSeconds, r.RerunIfInterrupted)
        {
            Priority = r.Priority == 0 ? null : r.Priority,
            After = r.After is { Count: > 0 } ? r.After : null,
            DelaySeconds = r.Delay?.TotalSeconds,
            StartAt = r.StartAt,
            RetryCount = r.Retry?.Count,
            RetryDelaySeconds = r.Retry?.Delay.TotalSeconds,
            RetryBackoff = r.Retry?.Backoff,
            Labels = r.Labels,
            Argv = r.ArgumentVectors,
            Stdin = r.StandardInput,
            IdempotencyKey = r.IdempotencyKey,
            Limits = r.Limits,
            RunAs = r.RunAs,
        };

    private static StoredRecord FromResult(string kind, JobResult result) =>
        new(kind, result.Id, result.FinishedAt, result.Queue, result.Commands,
            Outcome: result.Outcome, EnqueuedAt: result.EnqueuedAt, StartedAt: result.StartedAt,
            Results: [.. result.CommandResults.Select(c => StoredCommand.From(c))])
        {
            Attempt = result.Attempt == 1 ? null : result.Attempt,
            Previous = result.PreviousAttempts.Count == 0 ? null : [.. result.PreviousAttempts.Select(p => FromResult("attempt", p))],
            Labels = result.Labels,
            IdempotencyKey = result.IdempotencyKey,
        };

    /// <summary>The record, or <see langword="null"/> when the content is impossible (a checksum only proves the bytes are the ones written).</summary>
    public JobStoreRecord? ToRecord()
    {
        if (string.IsNullOrEmpty(Id) || (Commands is not null && (Commands.Count == 0 || Commands.Any(c => c is null))))
        {
            return null;
        }

        return Kind switch
        {
            "enqueued" when ToRequest(Id) is { } request && At is { } at => new JobEnqueuedRecord(request, at),
            "started" when At is { } at => new JobStartedRecord(Id, at),
            "process" when Index is >= 0 && Pid is > 0 && PidStart is { } start && !string.IsNullOrEmpty(Boot) =>
                new JobProcessStartedRecord(Id, Index.Value, Pid.Value, start, Boot),
            "finished" when ToResult() is { } result => new JobFinishedRecord(result),
            "retry" when ToResult() is { } result && NotBefore is { } notBefore => new JobRetryScheduledRecord(result, notBefore),
            "queue" when Limit is { } limit && limit >= 0 => new QueueStateRecord(Id, limit, Paused ?? false, Draining ?? false),
            "recurrence" when ToRequest(Id) is { } job && !string.IsNullOrEmpty(Cron) && At is { } at =>
                new RecurrenceRecord(new Recurrence(Id, Cron, job) { TimeZone = TimeZone }, at, LastOccurrence),
            "recurrence_removed" => new RecurrenceRemovedRecord(Id),
            _ => null,
        };
    }

    /// <summary>The request of an enqueued (or recurrence) record, or null when its content is impossible.</summary>
    private JobRequest? ToRequest(string id) => Commands is null || string.IsNullOrEmpty(Queue)
        || TimeoutSeconds is not (null or (> 0 and <= 1e9)) || (Environment is not null && Environment.Any(kv => kv.Key is null || kv.Value is null))
        || RetryCount is < 0 || RetryBackoff is < 1 || DelaySeconds is < 0 || Limits?.Problem("a journal record") is not null || RunAs is ""
        ? null
        : new JobRequest(id, Commands)
        {
            Queue = Queue,
            WorkingDirectory = WorkingDirectory,
            Environment = Environment,
            Timeout = TimeoutSeconds is { } t ? TimeSpan.FromSeconds(t) : null,
            RerunIfInterrupted = RerunIfInterrupted,
            Priority = Priority ?? 0,
            After = After,
            Delay = DelaySeconds is { } d ? TimeSpan.FromSeconds(d) : null,
            StartAt = StartAt,
            Retry = RetryCount is { } count ? new RetryPolicy(count, TimeSpan.FromSeconds(RetryDelaySeconds ?? 0), RetryBackoff ?? 1) : null,
            Labels = Labels,
            ArgumentVectors = Argv,
            StandardInput = Stdin,
            IdempotencyKey = IdempotencyKey,
            Limits = Limits,
            RunAs = RunAs,
        };

    /// <summary>The result of a finished (or retry, or attempt) record, or null when its content is impossible.</summary>
    private JobResult? ToResult()
    {
        if (Commands is null || string.IsNullOrEmpty(Queue) || At is not { } at || Outcome is not { } outcome || !Enum.IsDefined(outcome)
            || EnqueuedAt is not { } enqueued || (Results is not null && (Results.Count > Commands.Count || Results.Any(r => r is null || r.Dropped < 0 || !r.UsageIsPossible))))
        {
            return null;
        }

        var previous = new List<JobResult>();
        foreach (var p in Previous ?? [])
        {
            if (p?.ToResult() is not { } r)
            {
                return null;
            }

            previous.Add(r);
        }

        var commands = Commands;
        return new JobResult(Id, Queue, commands, outcome,
            [.. (Results ?? []).Select((c, i) => new CommandResult(i, commands[i], c.Text, c.Dropped, c.ExitCode, c.StartedAt, c.FinishedAt) { Usage = c.ToUsage() })],
            enqueued, StartedAt, at)
        {
            Attempt = Attempt ?? 1,
            PreviousAttempts = previous,
            Labels = Labels,
            IdempotencyKey = IdempotencyKey,
        };
    }
}

/// <summary>
/// A command's result in the journal. Output that JSON would escape heavily (NUL and other control characters take 6 bytes each,
/// characters outside the BMP 12) is kept as base64 of its UTF-8 instead, so a record is never more than 4 bytes a character.
/// </summary>
/// <remarks>
/// <c>Usage</c> is what the command used, as two or three numbers: user CPU and system CPU in microseconds (the resolution
/// <c>wait4</c> reports), then the peak memory in bytes when it is known; left out when the runner reported none, as in
/// journals written before it was kept.
/// </remarks>
internal sealed record StoredCommand(string? Output, long Dropped, int ExitCode, DateTimeOffset StartedAt, DateTimeOffset FinishedAt, byte[]? Utf8 = null)
{
    public long[]? Usage { get; init; }

    [JsonIgnore]
    public string Text => Output ?? (Utf8 is { } bytes ? Encoding.UTF8.GetString(bytes) : string.Empty);

    [JsonIgnore]
    public bool UsageIsPossible => Usage is null || (Usage.Length is 2 or 3 && Usage.All(n => n >= 0) && Usage[0] <= MaxMicroseconds && Usage[1] <= MaxMicroseconds);

    private static long MaxMicroseconds => TimeSpan.MaxValue.Ticks / TimeSpan.TicksPerMicrosecond;

    public static StoredCommand From(CommandResult c) => (EscapesHeavily(c.Output)
        ? new StoredCommand(null, c.DroppedOutputCharacters, c.ExitCode, c.StartedAt, c.FinishedAt, Encoding.UTF8.GetBytes(c.Output))
        : new StoredCommand(c.Output, c.DroppedOutputCharacters, c.ExitCode, c.StartedAt, c.FinishedAt)) with
    {
        Usage = c.Usage is not { } u ? null
            : u.PeakMemoryBytes is { } peak ? [Microseconds(u.UserCpuTime), Microseconds(u.SystemCpuTime), peak]
            : [Microseconds(u.UserCpuTime), Microseconds(u.SystemCpuTime)],
    };

    public CommandUsage? ToUsage() => Usage is [var user, var system, .. var peak]
        ? new CommandUsage
        {
            UserCpuTime = TimeSpan.FromTicks(user * TimeSpan.TicksPerMicrosecond),
            SystemCpuTime = TimeSpan.FromTicks(system * TimeSpan.TicksPerMicrosecond),
            PeakMemoryBytes = peak is [var bytes] ? bytes : null,
        }
        : null;

    private static long Microseconds(TimeSpan time) => time.Ticks / TimeSpan.TicksPerMicrosecond;

    /// <summary>Whether the JSON string (with relaxed escaping) would be longer than base64 of the UTF-8.</summary>
    internal static bool EscapesHeavily(string text)
    {
        long json = 0;
        long utf8 = 0;
        foreach (var c in text)
        {
            switch (c)
            {
                case '\n' or '\r' or '\t' or '\b' or '\f' or '"' or '\\':
                    json += 2;
                    utf8 += 1;
                    break;
                case < ' ' or '\u007f':
                    json += 6;
                    utf8 += 1;
                    break;
                case < '\u0080':
                    json += 1;
                    utf8 += 1;
                    break;
                case < '\u0800':
                    json += 2;
                    utf8 += 2;
                    break;
                default:
                    // Surrogates are escaped (\\uXXXX each); other characters are written as they are.
                    json += char.IsSurrogate(c) ? 6 : 3;
                    utf8 += char.IsSurrogate(c) ? 2 : 3;
                    break;
            }
        }

        return json > (utf8 + 2) / 3 * 4;
    }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(StoredRecord))]
internal sealed partial class StoreJsonContext : JsonSerializerContext;
