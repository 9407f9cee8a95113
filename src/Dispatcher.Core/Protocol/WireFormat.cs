using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Dispatcher.Protocol;

/// <summary>Builds the JSON shapes of the sysadm protocol. Keys come in the order the sysadm server wrote them (sorted).</summary>
internal static class WireFormat
{
    /// <summary>Compact JSON that escapes only what JSON requires (quotes, backslashes, control characters), as the sysadm server wrote it.</summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        WriteIndented = false,

        // On .NET 8 a JsonValue made from a generic T needs a resolver to be written.
        TypeInfoResolver = JsonSerializerOptions.Default.TypeInfoResolver,
    };

    public static JsonObject Envelope(string @namespace, string name, string? id, JsonNode? args)
    {
        var envelope = new JsonObject { ["args"] = args };
        if (id is not null)
        {
            envelope["id"] = id;
        }

        envelope["name"] = name;
        envelope["namespace"] = @namespace;
        return envelope;
    }

    public static JsonObject ErrorArgs(int code, string message) => new()
    {
        ["code"] = code.ToString(CultureInfo.InvariantCulture),
        ["message"] = message,
    };

    /// <summary>
    /// The <c>list</c> result written straight to UTF-8 (no JsonNode tree), shaped as in the protocol document (queues in order,
    /// empty ones left out, positions as strings). The writer works in a pooled buffer; only the result is allocated.
    /// </summary>
    public static byte[] ListUtf8(IReadOnlyList<JobInfo> jobs)
    {
        var buffer = new PooledBufferWriter(256 + (jobs.Count * 128));
        try
        {
            using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JsonOptions.Encoder, SkipValidation = true }))
            {
                writer.WriteStartObject();
                writer.WriteStartObject("jobs");
                string? queue = null;
                foreach (var job in jobs)
                {
                    // List() groups jobs by queue, so each queue's object opens once.
                    if (job.Queue != queue)
                    {
                        if (queue is not null)
                        {
                            writer.WriteEndObject();
                        }

                        queue = job.Queue;
                        writer.WriteStartObject(queue);
                    }

                    writer.WriteStartObject(job.Id);
                    writer.WriteStartArray("commands");
                    foreach (var command in job.Commands)
                    {
                        writer.WriteStringValue(command);
                    }

                    writer.WriteEndArray();
                    if (job.QueuePosition is { } position)
                    {
                        writer.WriteString("queue_position", position.ToString(CultureInfo.InvariantCulture));
                    }

                    writer.WriteString("state", job.State == JobState.Running ? "running" : "pending");
                    WriteSchedulingMembers(writer, job);
                    writer.WriteEndObject();
                }

                if (queue is not null)
                {
                    writer.WriteEndObject();
                }

                writer.WriteEndObject();
                writer.WriteEndObject();
            }

            return buffer.WrittenSpan.ToArray();
        }
        finally
        {
            buffer.Dispose();
        }
    }

    /// <summary>
    /// Writes <paramref name="envelope"/> (whose <c>args</c> is null) with <paramref name="rawArgs"/> as its <c>args</c>: the small
    /// envelope is serialized, and the raw bytes are spliced in place of its <c>null</c>, with one copy.
    /// </summary>
    public static byte[] WithRawArgs(JsonObject envelope, byte[] rawArgs)
    {
        var shell = System.Text.Encoding.UTF8.GetBytes(envelope.ToJsonString(JsonOptions));
        ReadOnlySpan<byte> head = "{\"args\":null"u8;
        if (!shell.AsSpan().StartsWith(head))
        {
            throw new InvalidOperationException("The envelope must start with a null args member.");
        }

        var frame = new byte[shell.Length - 4 + rawArgs.Length];
        "{\"args\":"u8.CopyTo(frame);
        rawArgs.CopyTo(frame, 8);
        shell.AsSpan(head.Length).CopyTo(frame.AsSpan(8 + rawArgs.Length));
        return frame;
    }

    /// <summary>
    /// One page of <c>history</c> written straight to UTF-8: <c>{"history": [...], "next": "CURSOR"}</c>. Each job is written on its
    /// own first (one job's tree at a time, never the whole reply's), and is added only while the page stays within
    /// <paramref name="maxBytes"/>, except the first, so a page always moves forward. <c>next</c> is left out on the last page.
    /// </summary>
    public static byte[] HistoryPageUtf8(IReadOnlyList<JobResult> results, int start, ISet<string>? only, int limit, int maxBytes,
        CancellationToken cancellationToken)
    {
        var page = new PooledBufferWriter(4096);
        var one = new PooledBufferWriter(4096);
        var options = new JsonWriterOptions { Encoder = JsonOptions.Encoder, SkipValidation = true };
        try
        {
            using (var writer = new Utf8JsonWriter(page, options))
            using (var jobWriter = new Utf8JsonWriter(one, options))
            {
                writer.WriteStartObject();
                writer.WriteStartArray("history");
                var count = 0;
                JobResult? last = null;
                var more = false;
                for (var i = start; i < results.Count; i++)
                {
                    var result = results[i];
                    if (only is not null && !only.Contains(result.Id))
                    {
                        continue;
                    }

                    if (count == limit)
                    {
                        more = true;
                        break;
                    }

                    cancellationToken.ThrowIfCancellationRequested();
                    one.Clear();
                    jobWriter.Reset(one);
                    FinishedDetails(result).WriteTo(jobWriter, JsonOptions);
                    jobWriter.Flush();
                    writer.Flush();
                    if (count > 0 && page.WrittenCount + one.WrittenCount > maxBytes)
                    {
                        more = true;
                        break;
                    }

                    writer.WriteRawValue(one.WrittenSpan, skipInputValidation: true);
                    count++;
                    last = result;
                }

                writer.WriteEndArray();
                if (more && last is not null)
                {
                    writer.WriteString("next", HistoryCursor.For(last));
                }

                writer.WriteEndObject();
            }

            return page.WrittenSpan.ToArray();
        }
        finally
        {
            page.Dispose();
            one.Dispose();
        }
    }

    /// <summary>An IBufferWriter over ArrayPool arrays.</summary>
    private sealed class PooledBufferWriter(int initialCapacity) : System.Buffers.IBufferWriter<byte>, IDisposable
    {
        private byte[] _buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(initialCapacity);
        private int _written;

        public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _written);

        public int WrittenCount => _written;

        public void Clear() => _written = 0;

        public void Advance(int count) => _written += count;

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _buffer.AsMemory(_written);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _buffer.AsSpan(_written);
        }

        public void Dispose() => System.Buffers.ArrayPool<byte>.Shared.Return(_buffer);

        private void Ensure(int sizeHint)
        {
            if (_buffer.Length - _written >= Math.Max(sizeHint, 256))
            {
                return;
            }

            var bigger = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _written + Math.Max(sizeHint, 256)));
            _buffer.AsSpan(0, _written).CopyTo(bigger);
            System.Buffers.ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
    }

    /// <summary>A finished job as the <c>process_details</c> of its finished event, plus its queue.</summary>
    public static JsonObject FinishedDetails(JobResult result)
    {
        var details = new JsonObject
        {
            ["process_id"] = result.Id,
            ["queue"] = result.Queue,
            ["state"] = "finished",
            ["cmd_list"] = new JsonArray([.. result.Commands.Select(c => (JsonNode?)c)]),
        };
        if (result.StartedAt is not null)
        {
            // A job killed while pending never started, and has no start time.
            details["time_started"] = Iso(result.StartedAt);
        }

        details["time_finished"] = Iso(result.FinishedAt);
        details["outcome"] = Outcome(result.Outcome);
        if (result.Usage is { } usage)
        {
            // Extension members: what the job's commands used together.
            details["cpu_user_seconds"] = Math.Round(usage.UserCpuTime.TotalSeconds, 6);
            details["cpu_system_seconds"] = Math.Round(usage.SystemCpuTime.TotalSeconds, 6);
            if (usage.PeakMemoryBytes is { } peak)
            {
                details["peak_memory_bytes"] = peak;
            }
        }

        AddCommandResults(details, result);
        AddSchedulingMembers(details, result);
        return details;
    }

    /// <summary>The extension members of a listed job, written only when they differ from a plain job's (old clients see nothing new).</summary>
    private static void WriteSchedulingMembers(Utf8JsonWriter writer, JobInfo job)
    {
        if (job.Priority != 0)
        {
            writer.WriteNumber("priority", job.Priority);
        }

        if (job.Attempt > 1)
        {
            writer.WriteNumber("attempt", job.Attempt);
        }

        if (job.NotBefore is { } notBefore)
        {
            writer.WriteString("not_before", Iso(notBefore));
        }

        if (job.Labels is { Count: > 0 } labels)
        {
            writer.WriteStartObject("labels");
            foreach (var (key, value) in labels)
            {
                writer.WriteString(key, value);
            }

            writer.WriteEndObject();
        }
    }

    /// <summary>The extension members of a finished job: attempts (when retried) and labels, only when there are some.</summary>
    public static void AddSchedulingMembers(JsonObject details, JobResult result)
    {
        if (result.Attempt > 1)
        {
            details["attempt"] = result.Attempt;
            details["previous_attempts"] = new JsonArray([.. result.PreviousAttempts.Select(a => (JsonNode?)new JsonObject
            {
                ["attempt"] = a.Attempt,
                ["outcome"] = Outcome(a.Outcome),
                ["exit_code"] = a.ExitCode,
                ["time_started"] = Iso(a.StartedAt),
                ["time_finished"] = Iso(a.FinishedAt),
                ["output"] = string.Concat(a.CommandResults.Select(c => c.Output)),
            })]);
        }

        if (result.Labels is { Count: > 0 } labels)
        {
            details["labels"] = Labels(labels);
        }
    }

    public static JsonObject Labels(IReadOnlyDictionary<string, string> labels)
    {
        var o = new JsonObject();
        foreach (var (key, value) in labels)
        {
            o[key] = value;
        }

        return o;
    }

    public static JsonObject Queue(QueueInfo queue) => new()
    {
        ["limit"] = queue.Limit,
        ["paused"] = queue.Paused,
        ["draining"] = queue.Draining,
        ["drained"] = queue.Drained,
        ["running"] = queue.Running,
        ["pending"] = queue.Pending,
    };

    public static string? Iso(DateTimeOffset? time) => time?.ToString("yyyy-MM-ddTHH:mm:ss.fffzzz", CultureInfo.InvariantCulture);

    /// <summary>
    /// Adds <c>"COMMAND": "output"</c> and <c>"return_codes/COMMAND": "code"</c> per command that ran. A job that runs the same command
    /// twice has one key for it: the outputs are concatenated and the last return code wins.
    /// </summary>
    public static void AddCommandResults(JsonObject details, JobResult result)
    {
        foreach (var command in result.CommandResults)
        {
            details[command.Command] = details[command.Command] is JsonValue previous
                ? previous.GetValue<string>() + command.Output
                : command.Output;
            details["return_codes/" + command.Command] = command.ExitCode.ToString(CultureInfo.InvariantCulture);
        }
    }

    public static string Outcome(JobOutcome outcome) => outcome switch
    {
        JobOutcome.Succeeded => "succeeded",
        JobOutcome.Failed => "failed",
        JobOutcome.Killed => "killed",
        JobOutcome.TimedOut => "timed_out",
        JobOutcome.Skipped => "skipped",
        JobOutcome.OomKilled => "oom_killed",
        _ => "interrupted",
    };
}

/// <summary>Where a <c>history</c> page ended: the last job's finish time and id (the time places it once the id is gone).</summary>
internal sealed record HistoryCursor(long FinishedTicks, string Id)
{
    public static string For(JobResult result) =>
        result.FinishedAt.UtcTicks.ToString(CultureInfo.InvariantCulture) + ":" + result.Id;

    public static HistoryCursor? Parse(string text)
    {
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 && long.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var ticks)
            ? new HistoryCursor(ticks, text[(colon + 1)..])
            : null;
    }

    /// <summary>The index to continue from: after the cursor's job, or, once that job is no longer kept, after its finish time.</summary>
    public int StartIn(IReadOnlyList<JobResult> results)
    {
        for (var i = 0; i < results.Count; i++)
        {
            if (results[i].Id == Id && results[i].FinishedAt.UtcTicks == FinishedTicks)
            {
                return i + 1;
            }
        }

        for (var i = 0; i < results.Count; i++)
        {
            if (results[i].FinishedAt.UtcTicks > FinishedTicks)
            {
                return i;
            }
        }

        return results.Count;
    }
}
