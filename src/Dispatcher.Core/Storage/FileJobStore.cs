using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Threading.Channels;
using Dispatcher.Telemetry;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Storage;

/// <summary>
/// The default store: an append-only journal file, one record per line, each line <c>CRC32 JSON\n</c>. Appends are group-committed:
/// a writer takes every record queued so far, writes them with one write and one flush (fsync when asked), then completes all
/// their tasks. On load, the first line that is torn (no newline) or fails its checksum ends the intact part: the rest is
/// moved aside to <c>jobs.journal.damaged-*</c> and logged with its byte offset. Rewrites go to a temporary file that is
/// flushed and renamed over the journal, so a crash leaves the old or the new journal, never a mix.
/// </summary>
internal sealed partial class FileJobStore : IJobStore
{
    public const string FileName = "jobs.journal";

    private readonly string _path;
    private readonly bool _flushToDisk;
    private readonly ILogger _logger;
    private readonly Channel<Work> _work = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;
    private FileStream? _file;

    private readonly DispatcherMetrics? _metrics;

    public FileJobStore(string directory, bool flushToDisk, ILogger logger, DispatcherMetrics? metrics = null)
    {
        _metrics = metrics;
        Directory.CreateDirectory(directory);
        _path = Path.Combine(directory, FileName);
        _flushToDisk = flushToDisk;
        _logger = logger;
        _writer = Task.Run(WriteLoopAsync);
    }

    public IReadOnlyList<JobStoreRecord> Load()
    {
        var records = new List<JobStoreRecord>();
        if (!File.Exists(_path))
        {
            return records;
        }

        var bytes = File.ReadAllBytes(_path);
        var offset = 0;
        var line = 0;
        string? damage = null;
        while (offset < bytes.Length)
        {
            line++;
            var end = Array.IndexOf(bytes, (byte)'\n', offset);
            if (end < 0)
            {
                damage = "torn record (no end of line)";
                break;
            }

            if (!TryDecode(bytes.AsSpan(offset, end - offset), out var record, out var problem))
            {
                damage = problem;
                break;
            }

            records.Add(record);
            offset = end + 1;
        }

        if (damage is not null)
        {
            var aside = _path + ".damaged-" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
            File.WriteAllBytes(aside, bytes.AsSpan(offset).ToArray());
            using (var file = new FileStream(_path, FileMode.Open, FileAccess.Write))
            {
                file.SetLength(offset);
                file.Flush(flushToDisk: true);
            }

            Log.Damaged(_logger, _path, offset, line, damage, bytes.Length - offset, records.Count, aside);
        }

        return records;
    }

    // Both only queue: the records are encoded on the writer's thread, never under the caller's locks (a finished job's record
    // holds up to MaxOutputCharacters of output).
    public Task AppendAsync(JobStoreRecord record) => Queue(new Work(record, null));

    public Task RewriteAsync(IReadOnlyList<JobStoreRecord> records) => Queue(new Work(null, records));

    private Task Queue(Work work) =>
        _work.Writer.TryWrite(work) ? work.Done.Task : Task.FromException(new ObjectDisposedException(nameof(FileJobStore)));

    public async ValueTask DisposeAsync()
    {
        _work.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
        if (_file is not null)
        {
            await _file.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task WriteLoopAsync()
    {
        var batch = new List<Work>();
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        while (await _work.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (_work.Reader.TryRead(out var work))
            {
                if (work.Rewrite is { } records)
                {
                    // Appends queued before the rewrite go out first; then the journal is replaced.
                    Commit(batch, buffer);
                    if (records.All(r => TryEncode(r, buffer, work)))
                    {
                        Complete([work], () => Replace(buffer.WrittenSpan));
                    }

                    buffer.ResetWrittenCount();
                }
                else if (TryEncode(work.Record!, buffer, work))
                {
                    batch.Add(work);
                }
            }

            Commit(batch, buffer);
        }
    }

    /// <summary>Encodes a record into the batch; a record that cannot be encoded fails its own task, not the writer.</summary>
    private bool TryEncode(JobStoreRecord record, ArrayBufferWriter<byte> buffer, Work work)
    {
        try
        {
            buffer.Write(Encode(record));
            return true;
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or InvalidOperationException)
        {
            Log.WriteFailed(_logger, _path, ex);
            work.Done.TrySetException(ex);
            return false;
        }
    }

    private void Commit(List<Work> batch, ArrayBufferWriter<byte> buffer)
    {
        if (batch.Count == 0)
        {
            return;
        }

        var records = batch.Count;
        Complete(batch, () =>
        {
            var started = Stopwatch.GetTimestamp();
            var file = _file ??= new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read, 1, FileOptions.None);
            file.Write(buffer.WrittenSpan);
            file.Flush(_flushToDisk);
            _metrics?.JournalCommitted(records, Stopwatch.GetElapsedTime(started));
        });
        batch.Clear();
        buffer.ResetWrittenCount();
    }

    private void Complete(List<Work> works, Action io)
    {
        try
        {
            io();
            foreach (var w in works)
            {
                w.Done.TrySetResult();
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.WriteFailed(_logger, _path, ex);
            foreach (var w in works)
            {
                w.Done.TrySetException(ex);
            }
        }
    }

    private void Replace(ReadOnlySpan<byte> content)
    {
        _file?.Dispose();
        _file = null;
        var temp = _path + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(content);
            file.Flush(_flushToDisk);
        }

        File.Move(temp, _path, overwrite: true);
    }

    internal static byte[] Encode(JobStoreRecord record)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(StoredRecord.From(record), StoreJsonContext.Default.StoredRecord);
        var crc = Crc32.HashToUInt32(json);
        var line = new byte[9 + json.Length + 1];
        Encoding.ASCII.GetBytes(crc.ToString("x8", CultureInfo.InvariantCulture), line);
        line[8] = (byte)' ';
        json.CopyTo(line, 9);
        line[^1] = (byte)'\n';
        return line;
    }

    internal static bool TryDecode(ReadOnlySpan<byte> line, out JobStoreRecord record, out string problem)
    {
        record = null!;
        if (line.Length < 10 || line[8] != (byte)' '
            || !uint.TryParse(Encoding.ASCII.GetString(line[..8]), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var crc))
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

            problem = "record of unknown kind";
            return false;
        }
        catch (JsonException ex)
        {
            problem = "unreadable record: " + ex.Message;
            return false;
        }
    }

    private sealed record Work(JobStoreRecord? Record, IReadOnlyList<JobStoreRecord>? Rewrite)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 401, EventName = "JournalDamaged", Level = LogLevel.Error,
            Message = "Job journal {Path} is damaged at byte {Offset} (record {Line}): {Problem}. Recovered {Records} intact record(s); the damaged {Bytes} byte(s) were moved to {Aside}")]
        public static partial void Damaged(ILogger logger, string path, int offset, int line, string problem, int bytes, int records, string aside);

        [LoggerMessage(EventId = 402, EventName = "JournalWriteFailed", Level = LogLevel.Error, Message = "Writing the job journal {Path} failed")]
        public static partial void WriteFailed(ILogger logger, string path, Exception exception);
    }
}

/// <summary>The journal's JSON shape of a record: one flat object with a kind.</summary>
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
    IReadOnlyList<StoredCommand>? Results = null)
{
    public static StoredRecord From(JobStoreRecord record) => record switch
    {
        JobEnqueuedRecord e => new("enqueued", e.Request.Id, e.EnqueuedAt, e.Request.Queue, e.Request.Commands, e.Request.WorkingDirectory,
            e.Request.Environment, e.Request.Timeout?.TotalSeconds, e.Request.RerunIfInterrupted),
        JobStartedRecord s => new("started", s.Id, s.StartedAt),
        JobFinishedRecord f => new("finished", f.Result.Id, f.Result.FinishedAt, f.Result.Queue, f.Result.Commands,
            Outcome: f.Result.Outcome, EnqueuedAt: f.Result.EnqueuedAt, StartedAt: f.Result.StartedAt,
            Results: [.. f.Result.CommandResults.Select(c => new StoredCommand(c.Output, c.DroppedOutputCharacters, c.ExitCode, c.StartedAt, c.FinishedAt))]),
        _ => throw new ArgumentException($"Unknown record type {record.GetType().Name}.", nameof(record)),
    };

    public JobStoreRecord? ToRecord() => Kind switch
    {
        "enqueued" when Commands is not null && Queue is not null && At is { } at => new JobEnqueuedRecord(
            new JobRequest(Id, Commands)
            {
                Queue = Queue,
                WorkingDirectory = WorkingDirectory,
                Environment = Environment,
                Timeout = TimeoutSeconds is { } t ? TimeSpan.FromSeconds(t) : null,
                RerunIfInterrupted = RerunIfInterrupted,
            }, at),
        "started" when At is { } at => new JobStartedRecord(Id, at),
        "finished" when Commands is not null && Queue is not null && At is { } at && Outcome is { } outcome && EnqueuedAt is { } enqueued => new JobFinishedRecord(
            new JobResult(Id, Queue, Commands, outcome,
                [.. (Results ?? []).Select((c, i) => new CommandResult(i, Commands[i], c.Output, c.Dropped, c.ExitCode, c.StartedAt, c.FinishedAt))],
                enqueued, StartedAt, at)),
        _ => null,
    };
}

internal sealed record StoredCommand(string Output, long Dropped, int ExitCode, DateTimeOffset StartedAt, DateTimeOffset FinishedAt);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(StoredRecord))]
internal sealed partial class StoreJsonContext : JsonSerializerContext;
