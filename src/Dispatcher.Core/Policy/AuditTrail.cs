using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// Who ran, killed, paused, resumed or drained what, changed or added which queue, removed which recurrence, when and from
/// where: one structured log event per action (event ids 601 to 603, 605 and 606) and, with a data
/// directory, one JSON line per action appended to <c>audit.log</c> there. The file is only ever appended to (opened with
/// <c>O_APPEND</c>), each line is written whole and flushed to the operating system before the action's reply.
/// </summary>
internal sealed partial class AuditTrail : IDisposable
{
    public const string FileName = "audit.log";

    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private readonly string? _path;
    private FileStream? _file;
    private int _fileWrites;

    // No I/O here: the file is opened at the first action, and a storage that refuses it costs the audit file, not the host.
    public AuditTrail(IOptions<DispatcherOptions> options, TimeProvider time, ILogger<AuditTrail>? logger = null)
    {
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _time = time;
        _path = options.Value.DataDirectory is { } directory ? Path.Combine(directory, FileName) : null;
    }

    /// <summary>Gets how many writes the file has had (each holds one or more whole lines).</summary>
    internal int FileWrites => Volatile.Read(ref _fileWrites);

    /// <summary>
    /// Starts collecting the lines of one request (a <c>run</c> of many jobs): they go to the file in one write when the batch
    /// is disposed, which the request does before its reply. A <c>run</c> of 1 000 jobs made 1 000 writes of one line each.
    /// </summary>
    public Batch BeginBatch() => new(this);

    /// <summary>Records a job a client submitted: started, or rejected with the reason.</summary>
    /// <param name="session">The client.</param>
    /// <param name="job">The job.</param>
    /// <param name="rejection">Why the policy refused it, or <see langword="null"/>.</param>
    /// <param name="rewritten">Whether the policy rewrote it.</param>
    /// <param name="batch">The request's batch, or <see langword="null"/> to write the line at once.</param>
    public void Run(ProtocolConnection session, JobRequest job, string? rejection, bool rewritten, Batch? batch = null)
    {
        var user = session.User?.Name ?? "-";
        if (rejection is null)
        {
            Log.Run(_logger, user, session.RemoteAddress, session.Transport, job.Id, job.Queue, job.Commands.Count, rewritten);
        }
        else
        {
            Log.RunRejected(_logger, user, session.RemoteAddress, session.Transport, job.Id, rejection);
        }

        Append(session, rejection is null ? "run" : "run_rejected", batch, writer =>
        {
            writer.WriteString("job", job.Id);
            writer.WriteString("queue", job.Queue);
            WriteStrings(writer, "commands", job.Commands);
            if (rewritten)
            {
                writer.WriteBoolean("rewritten", true);
            }

            if (rejection is not null)
            {
                writer.WriteString("reason", rejection);
            }
        });
    }

    /// <summary>Records a kill request and which of its jobs it reached.</summary>
    public void Kill(ProtocolConnection session, IReadOnlyList<string> requested, IReadOnlyList<string> killed)
    {
        Log.Kill(_logger, session.User?.Name ?? "-", session.RemoteAddress, session.Transport, string.Join(",", killed), requested.Count);
        Append(session, "kill", null, writer =>
        {
            WriteStrings(writer, "requested", requested);
            WriteStrings(writer, "killed", killed);
        });
    }

    /// <summary>
    /// Records a change to queues a client made: <c>pause</c>, <c>resume</c> or <c>drain</c> of <paramref name="queues"/>, or
    /// <c>set_limit</c> or <c>add_queue</c> of one queue with its new <paramref name="limit"/>.
    /// </summary>
    public void Queue(ProtocolConnection session, string action, IReadOnlyList<string> queues, int? limit = null)
    {
        Log.Queue(_logger, session.User?.Name ?? "-", session.RemoteAddress, session.Transport, action, string.Join(",", queues),
            limit is { } l ? l.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-");
        Append(session, action, null, writer =>
        {
            WriteStrings(writer, "queues", queues);
            if (limit is { } value)
            {
                writer.WriteNumber("limit", value);
            }
        });
    }

    /// <summary>Records a <c>remove_recurrence</c> request and which of its recurrences it removed.</summary>
    public void RemoveRecurrence(ProtocolConnection session, IReadOnlyList<string> requested, IReadOnlyList<string> removed)
    {
        Log.RecurrenceRemoved(_logger, session.User?.Name ?? "-", session.RemoteAddress, session.Transport, string.Join(",", removed), requested.Count);
        Append(session, "remove_recurrence", null, writer =>
        {
            WriteStrings(writer, "requested", requested);
            WriteStrings(writer, "removed", removed);
        });
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _file?.Dispose();
            _file = null;
        }
    }

    private void Append(ProtocolConnection session, string action, Batch? batch, Action<Utf8JsonWriter> members)
    {
        if (_path is null)
        {
            return;
        }

        var own = batch is null ? new MemoryStream() : null;
        var buffer = own ?? (batch!.Lines ??= new MemoryStream());
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("time", _time.GetUtcNow());
            writer.WriteString("action", action);
            writer.WriteString("user", session.User?.Name);
            writer.WriteString("address", session.RemoteAddress);
            writer.WriteString("transport", session.Transport);
            members(writer);
            writer.WriteEndObject();
        }

        buffer.WriteByte((byte)'\n');
        if (own is not null)
        {
            using (own)
            {
                Write(own);
            }
        }
    }

    /// <summary>Appends whole lines in one write.</summary>
    private void Write(MemoryStream lines)
    {
        lock (_gate)
        {
            try
            {
                _file ??= new FileStream(_path!, FileMode.Append, FileAccess.Write, FileShare.Read, bufferSize: 0);
                _file.Write(lines.GetBuffer(), 0, (int)lines.Length);
                _fileWrites++;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Logged each time: an audit line that could not be written must not pass unnoticed.
                Log.AuditFileFailed(_logger, ex);
            }
        }
    }

    /// <summary>Writes <paramref name="values"/> as the array member <paramref name="name"/>.</summary>
    private static void WriteStrings(Utf8JsonWriter writer, string name, IEnumerable<string> values)
    {
        writer.WriteStartArray(name);
        foreach (var value in values)
        {
            writer.WriteStringValue(value);
        }

        writer.WriteEndArray();
    }

    /// <summary>The audit lines of one request, written together when disposed (see <see cref="BeginBatch"/>).</summary>
    public sealed class Batch : IDisposable
    {
        private readonly AuditTrail _owner;

        internal Batch(AuditTrail owner) => _owner = owner;

        internal MemoryStream? Lines { get; set; }

        /// <summary>Writes the lines collected (nothing when there are none); a request that fails part-way still records what it did.</summary>
        public void Dispose()
        {
            if (Lines is { } lines)
            {
                Lines = null;
                using (lines)
                {
                    _owner.Write(lines);
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 601, EventName = "AuditRun", Level = LogLevel.Information, Message = "Audit: user {User} from {Address} ({Transport}) ran job {JobId} in {Queue} ({Commands} command(s), rewritten by the policy: {Rewritten})")]
        public static partial void Run(ILogger logger, string user, string address, string transport, string jobId, string queue, int commands, bool rewritten);

        [LoggerMessage(EventId = 602, EventName = "AuditRunRejected", Level = LogLevel.Warning, Message = "Audit: user {User} from {Address} ({Transport}) was refused job {JobId}: {Reason}")]
        public static partial void RunRejected(ILogger logger, string user, string address, string transport, string jobId, string reason);

        [LoggerMessage(EventId = 603, EventName = "AuditKill", Level = LogLevel.Information, Message = "Audit: user {User} from {Address} ({Transport}) killed job(s) {Killed} ({Requested} requested)")]
        public static partial void Kill(ILogger logger, string user, string address, string transport, string killed, int requested);

        [LoggerMessage(EventId = 604, EventName = "AuditFileFailed", Level = LogLevel.Error, Message = "Audit: appending to the audit file failed")]
        public static partial void AuditFileFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 605, EventName = "AuditQueue", Level = LogLevel.Information, Message = "Audit: user {User} from {Address} ({Transport}): {Action} of queue(s) {Queues} (limit {Limit})")]
        public static partial void Queue(ILogger logger, string user, string address, string transport, string action, string queues, string limit);

        [LoggerMessage(EventId = 606, EventName = "AuditRecurrenceRemoved", Level = LogLevel.Information, Message = "Audit: user {User} from {Address} ({Transport}) removed recurrence(s) {Removed} ({Requested} requested)")]
        public static partial void RecurrenceRemoved(ILogger logger, string user, string address, string transport, string removed, int requested);
    }
}
