using System.Security.Cryptography;
using System.Text;

namespace Dispatcher.Internal;

/// <summary>
/// Full job logs: with a data directory, every job's merged output also goes to <c>logs/&lt;sha256 of the id&gt;.log</c> as UTF-8,
/// readable by byte offset while the job runs and after. A log is bounded: past <see cref="DispatcherOptions.MaxLogBytes"/> its
/// oldest half is cut off; offsets stay absolute (a header records how many bytes were cut), so a reader's next offset stays valid.
/// The file is created with the job's first output: a job that prints nothing has none (creating, closing and at retention
/// deleting an empty file per job cost a serial queue of <c>true</c> about 0.5 ms of host CPU per job in ext4's inode
/// allocator, profiled in benchmarks/ANALYSIS.md).
/// </summary>
internal sealed class JobLogs
{
    /// <summary>The header: the count of bytes cut from the front, as 19 decimal digits and a newline.</summary>
    private const int HeaderLength = 20;

    private readonly string _directory;
    private readonly long _maxBytes;
    private readonly object _gate = new();

    /// <summary>
    /// The log files that exist (read from the directory at the first use, then kept up to date here), so that a job that printed
    /// nothing costs no system call: deleting its missing log when it ended and again at retention was two <c>unlink</c>s and
    /// two <c>stat</c>s per job (strace in benchmarks/ANALYSIS.md).
    /// </summary>
    private HashSet<string>? _existing;

    public JobLogs(string dataDirectory, long maxBytes)
    {
        _directory = Path.Combine(dataDirectory, "logs");
        _maxBytes = maxBytes;
    }

    /// <summary>Gets how many files this instance deleted or tried to (what the cache of existing files saves).</summary>
    internal int DeleteCalls => Volatile.Read(ref _deleteCalls);

    private int _deleteCalls;

    /// <summary>Gets how many log paths this instance computed (each a SHA-256 of a job id).</summary>
    internal int PathsComputed => Volatile.Read(ref _pathsComputed);

    private int _pathsComputed;

    public string PathOf(string jobId)
    {
        Interlocked.Increment(ref _pathsComputed);
        return Path.Combine(_directory, Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(jobId)))[..32].ToLowerInvariant() + ".log");
    }

    /// <summary>Starts a job's log, replacing the log of an earlier job with the same id; no file exists until the first output.</summary>
    public JobLog Create(string jobId) => new(this, jobId, _maxBytes);

    /// <summary>Reads a log that no job writes to any more (a finished job's); null when there is none.</summary>
    public JobLogChunk? ReadFinished(string jobId, long offset, int limit)
    {
        var path = PathOf(jobId);
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return JobLog.ReadFrom(file, offset, limit, finished: true);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Deletes a job's log file if one exists; while no log file exists at all, without computing its name.</summary>
    public void Delete(string jobId)
    {
        lock (_gate)
        {
            if (Existing().Count == 0)
            {
                return;
            }
        }

        DeleteFile(PathOf(jobId));
    }

    /// <summary>Deletes a log file if one exists.</summary>
    private void DeleteFile(string path)
    {
        lock (_gate)
        {
            if (!Existing().Remove(path))
            {
                return;
            }
        }

        Interlocked.Increment(ref _deleteCalls);
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

    /// <summary>Records a log file about to be created (before it is, so that a delete never misses it).</summary>
    private void Creating(string path)
    {
        lock (_gate)
        {
            Existing().Add(path);
        }
    }

    /// <summary>Called under the lock.</summary>
    private HashSet<string> Existing()
    {
        if (_existing is null)
        {
            var existing = new HashSet<string>(StringComparer.Ordinal);
            try
            {
                if (Directory.Exists(_directory))
                {
                    existing.UnionWith(Directory.EnumerateFiles(_directory, "*.log"));
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Unreadable: the files cannot be listed, and so they cannot be read or deleted by this process either.
            }

            _existing = existing;
        }

        return _existing;
    }

    /// <summary>Reads kept output held in memory (no data directory) as if it were a log that was never trimmed.</summary>
    public static JobLogChunk ReadText(string text, long offset, int limit, bool finished)
    {
        using var memory = new MemoryStream();
        memory.Write(Header(0));
        memory.Write(Encoding.UTF8.GetBytes(text));
        return JobLog.ReadFrom(memory, offset, limit, finished);
    }

    internal static byte[] Header(long trimmed) => Encoding.ASCII.GetBytes(trimmed.ToString("D19", System.Globalization.CultureInfo.InvariantCulture) + "\n");

    internal static long ReadHeader(Stream file)
    {
        Span<byte> header = stackalloc byte[HeaderLength];
        file.Position = 0;
        return file.Read(header) == HeaderLength && long.TryParse(Encoding.ASCII.GetString(header[..19]), out var trimmed) ? trimmed : 0;
    }

    /// <summary>The log of one running job. Appends come from the runner's output thread; reads from requests; one lock orders them.</summary>
    internal sealed class JobLog : IDisposable
    {
        private readonly object _gate = new();
        private readonly JobLogs _logs;
        private readonly string _jobId;
        private string? _path;
        private readonly long _maxBytes;
        private readonly Encoder _encoder = new UTF8Encoding(false).GetEncoder();
        private FileStream? _file;
        private bool _opened;
        private bool _closed;
        private long _trimmed;
        private byte[] _buffer = [];

        public JobLog(JobLogs logs, string jobId, long maxBytes)
        {
            _logs = logs;
            _jobId = jobId;
            _maxBytes = maxBytes;
        }

        /// <summary>The log's file, named when it is first needed (a silent job never needs it).</summary>
        private string FilePath => _path ??= _logs.PathOf(_jobId);

        /// <summary>Appends output; a failure to write (disk full) ends the log, never the job.</summary>
        public void Append(ReadOnlySpan<char> text)
        {
            lock (_gate)
            {
                if (_file is null && (_closed || text.IsEmpty || !TryOpen()))
                {
                    return;
                }

                var needed = _encoder.GetByteCount(text, flush: false);
                if (_buffer.Length < needed)
                {
                    _buffer = new byte[Math.Max(needed, _buffer.Length * 2)];
                }

                var count = _encoder.GetBytes(text, _buffer, flush: false);
                try
                {
                    _file.Write(_buffer, 0, count);
                    if (_file.Length - HeaderLength > _maxBytes)
                    {
                        Trim();
                    }
                }
                catch (IOException)
                {
                    Close();
                }
            }
        }

        /// <summary>Reads from the log while it is written.</summary>
        public JobLogChunk Read(long offset, int limit, bool finished)
        {
            lock (_gate)
            {
                if (!_opened)
                {
                    return ReadText(string.Empty, offset, limit, finished);
                }

                if (_file is null)
                {
                    using var file = new FileStream(FilePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                    return ReadFrom(file, offset, limit, finished);
                }

                _file.Flush();
                var end = _file.Position;
                try
                {
                    return ReadFrom(_file, offset, limit, finished, _trimmed);
                }
                finally
                {
                    _file.Position = end;
                }
            }
        }

        public void Dispose()
        {
            lock (_gate)
            {
                Close();
            }
        }

        internal static JobLogChunk ReadFrom(Stream file, long offset, int limit, bool finished, long? trimmed = null)
        {
            var cut = trimmed ?? ReadHeader(file);
            var length = file.Length - HeaderLength;
            var total = cut + length;
            var start = Math.Clamp(offset, cut, total);
            // At least 4 bytes, so a limit smaller than one character still makes progress.
            var count = (int)Math.Min(Math.Max(limit, 4), total - start);
            var bytes = new byte[count];
            file.Position = HeaderLength + (start - cut);
            file.ReadExactly(bytes);

            // Whole characters only: skip continuation bytes at the front (a start inside a character), and leave an
            // incomplete character at the end for the next read.
            var head = 0;
            while (head < count && (bytes[head] & 0xC0) == 0x80 && start + head > cut)
            {
                head++;
            }

            var tail = count;
            if (start + count < total || !finished)
            {
                tail = CompleteEnd(bytes, head, count);
            }

            return new JobLogChunk(Encoding.UTF8.GetString(bytes, head, tail - head), start + head, start + tail, total, finished, cut);
        }

        /// <summary>The end of the last whole UTF-8 character in bytes[from..to).</summary>
        private static int CompleteEnd(byte[] bytes, int from, int to)
        {
            var i = to - 1;
            var back = 0;
            while (i >= from && back < 4 && (bytes[i] & 0xC0) == 0x80)
            {
                i--;
                back++;
            }

            if (i < from)
            {
                return to;
            }

            var lead = bytes[i];
            var need = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
            return to - i >= need ? to : i;
        }

        /// <summary>Keeps the newest half of the bound and records how much was cut. Amortized: it runs once per half a bound written.</summary>
        private void Trim()
        {
            var file = _file!;
            var length = file.Length - HeaderLength;
            var keep = _maxBytes / 2;
            var drop = length - keep;
            var tail = new byte[keep];
            file.Position = HeaderLength + drop;
            file.ReadExactly(tail);
            _trimmed += drop;
            file.Position = 0;
            file.Write(Header(_trimmed));
            file.Write(tail);
            file.SetLength(HeaderLength + keep);
            file.Position = HeaderLength + keep;
        }

        /// <summary>Creates the file (replacing an earlier job's log of the same id); false when it cannot be, and the log ends.</summary>
        [System.Diagnostics.CodeAnalysis.MemberNotNullWhen(true, nameof(_file))]
        private bool TryOpen()
        {
            _opened = true;
            try
            {
                _logs.Creating(FilePath);
                Directory.CreateDirectory(_logs._directory);
                _file = new FileStream(FilePath, FileMode.Create, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete, 16 * 1024);
                _file.Write(Header(0));
                _buffer = new byte[4096];
                return true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _file?.Dispose();
                _file = null;
                _closed = true;
                return false;
            }
        }

        private void Close()
        {
            if (!_opened && !_closed)
            {
                // Never printed: an earlier job's log of the same id must not be read as this job's.
                _closed = true;
                _logs.Delete(_jobId);
                return;
            }

            _closed = true;
            if (_file is not null)
            {
                try
                {
                    var count = _encoder.GetBytes([], _buffer, flush: true);
                    _file.Write(_buffer, 0, count);
                    _file.Dispose();
                }
                catch (IOException)
                {
                }

                _file = null;
            }
        }
    }
}
