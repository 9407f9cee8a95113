using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using static Dispatcher.Protocol.JsonArgs;

namespace Dispatcher.Protocol.Routing;

/// <summary>
/// The extension actions of <c>rpc/dispatcher</c> for queue control and recurrences (pause, resume, drain, queues, set_limit,
/// add_queue, recurrences, remove_recurrence), and the scheduling members of a job object in <c>run</c>. Kept apart from the
/// sysadm actions so they move as one piece into a route table.
/// </summary>
internal sealed partial class DispatcherActions
{
    private const string SchedulingActionNames = "pause, resume, drain, queues, set_limit, add_queue, recurrences, remove_recurrence and log";

    /// <summary>Handles one of the scheduling actions, or returns null when <paramref name="action"/> is none of them.</summary>
    private async ValueTask<ProtocolReply?> SchedulingActionAsync(ProtocolConnection session, string ns, string name, string? id, string action,
        JsonElement args, CancellationToken cancellationToken)
    {
        switch (action)
        {
            case "queues":
                return Ok(ns, name, id, new JsonObject { ["queues"] = Queues(_dispatcher.GetQueues()) });
            case "log":
                return await LogAsync(ns, name, id, args, cancellationToken).ConfigureAwait(false);
            case "recurrences":
                return Ok(ns, name, id, new JsonObject { ["recurrences"] = Recurrences(_dispatcher.ListRecurrences()) });
            case "pause" or "resume" or "drain":
                return Require(session, id, DispatcherAccess.Full, action)
                    ?? await QueueStateAsync(session, ns, name, id, action, args, cancellationToken).ConfigureAwait(false);
            case "set_limit" or "add_queue":
                return Require(session, id, DispatcherAccess.Full, action)
                    ?? await QueueLimitAsync(session, ns, name, id, action, args, cancellationToken).ConfigureAwait(false);
            case "remove_recurrence":
                return Require(session, id, DispatcherAccess.Full, action)
                    ?? await RemoveRecurrenceAsync(session, ns, name, id, args, cancellationToken).ConfigureAwait(false);
            default:
                return null;
        }
    }

    /// <summary><c>pause</c>, <c>resume</c> and <c>drain</c>: one queue or an array of them; all must exist, or nothing changes.</summary>
    private async ValueTask<ProtocolReply> QueueStateAsync(ProtocolConnection session, string ns, string name, string? id, string action, JsonElement args,
        CancellationToken cancellationToken)
    {
        if (!TryGetProperty(args, "queue", out var queue) || !TryGetStrings(queue, out var queues) || queues.Length == 0)
        {
            return Error(id, 400, $"{action} needs \"queue\": a queue name or an array of queue names.");
        }

        if (UnknownQueue(queues) is { } unknown)
        {
            return Error(id, 400, unknown);
        }

        var done = new JsonArray();
        foreach (var q in queues.Distinct(StringComparer.Ordinal))
        {
            _ = action switch
            {
                "pause" => await _dispatcher.PauseQueueAsync(q, cancellationToken).ConfigureAwait(false),
                "resume" => await _dispatcher.ResumeQueueAsync(q, cancellationToken).ConfigureAwait(false),
                _ => await _dispatcher.DrainQueueAsync(q, cancellationToken).ConfigureAwait(false),
            };
            done.Add((JsonNode?)q);
        }

        _audit?.Queue(session, action, [.. done.Select(q => (string)q!)]);
        return Ok(ns, name, id, new JsonObject { [action == "pause" ? "paused" : action == "resume" ? "resumed" : "draining"] = done });
    }

    /// <summary><c>set_limit</c> and <c>add_queue</c>: <c>{"queue": "q", "limit": N}</c>; the reply is the queue as <c>queues</c> shows it.</summary>
    private async ValueTask<ProtocolReply> QueueLimitAsync(ProtocolConnection session, string ns, string name, string? id, string action, JsonElement args,
        CancellationToken cancellationToken)
    {
        if (!TryGetString(args, "queue", out var queue, out var problem) || queue.Length == 0)
        {
            return Error(id, 400, $"{action} needs \"queue\": a queue name. {problem}".TrimEnd());
        }

        if (!TryGetProperty(args, "limit", out var limitElement) || limitElement.ValueKind != JsonValueKind.Number
            || !limitElement.TryGetInt32(out var limit) || limit < 0)
        {
            return Error(id, 400, $"{action} needs \"limit\": how many jobs of the queue may run at once, a whole number from 0 (no limit) up.");
        }

        QueueInfo info;
        if (action == "add_queue")
        {
            if (_dispatcher.GetQueues().Any(q => q.Name == queue))
            {
                return Error(id, 400, $"A queue named '{queue}' exists already; use set_limit to change its limit.");
            }

            info = await _dispatcher.AddQueueAsync(queue, limit, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            if (UnknownQueue([queue]) is { } unknown)
            {
                return Error(id, 400, unknown);
            }

            info = await _dispatcher.SetQueueLimitAsync(queue, limit, cancellationToken).ConfigureAwait(false);
        }

        _audit?.Queue(session, action, [queue], limit);

        return Ok(ns, name, id, new JsonObject { ["queues"] = Queues([info]) });
    }

    private async ValueTask<ProtocolReply> RemoveRecurrenceAsync(ProtocolConnection session, string ns, string name, string? id, JsonElement args, CancellationToken cancellationToken)
    {
        if (!TryGetProperty(args, "recurrence", out var value) || !TryGetStrings(value, out var ids))
        {
            return Error(id, 400, "remove_recurrence needs \"recurrence\": a recurrence id or an array of them.");
        }

        var removed = new JsonArray();
        foreach (var r in ids.Distinct(StringComparer.Ordinal))
        {
            if (await _dispatcher.RemoveRecurrenceAsync(r, cancellationToken).ConfigureAwait(false))
            {
                removed.Add((JsonNode?)r);
            }
        }

        _audit?.RemoveRecurrence(session, ids, [.. removed.Select(r => (string)r!)]);
        return Ok(ns, name, id, new JsonObject { ["removed"] = removed });
    }

    /// <summary><c>log</c>: <c>{"job_id": J, "offset": 0, "limit": 65536}</c>, the job's full output from that UTF-8 byte offset.</summary>
    private async ValueTask<ProtocolReply> LogAsync(string ns, string name, string? id, JsonElement args, CancellationToken cancellationToken)
    {
        if (!TryGetString(args, "job_id", out var jobId, out var problem))
        {
            return Error(id, 400, "log needs \"job_id\": a job id. " + problem);
        }

        long offset = 0;
        if (TryGetProperty(args, "offset", out var o) && (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out offset) || offset < 0))
        {
            return Error(id, 400, "\"offset\" must be a whole number of bytes, 0 or more.");
        }

        var limit = 65536;
        if (TryGetProperty(args, "limit", out var l) && (l.ValueKind != JsonValueKind.Number || !l.TryGetInt32(out limit) || limit < 1 || limit > 1024 * 1024))
        {
            return Error(id, 400, "\"limit\" must be a whole number of bytes from 1 to 1048576.");
        }

        JobLogChunk chunk;
        try
        {
            chunk = await _dispatcher.ReadLogAsync(jobId, offset, limit, cancellationToken).ConfigureAwait(false);
        }
        catch (JobNotFoundException)
        {
            return Error(id, 404, $"No job '{jobId}' is pending, running or in the retained history.");
        }

        return Ok(ns, name, id, new JsonObject
        {
            ["job_id"] = jobId,
            ["offset"] = chunk.Offset,
            ["next_offset"] = chunk.NextOffset,
            ["end_offset"] = chunk.EndOffset,
            ["trimmed"] = chunk.Trimmed,
            ["finished"] = chunk.Finished,
            ["output"] = chunk.Text,
        });
    }

    /// <summary>
    /// The filters of <c>history</c>: <c>queue</c> and <c>outcome</c> (a string or an array: any of them), <c>labels</c> (an
    /// object: all of them), <c>since</c> and <c>until</c> (ISO 8601 times the job finished at or after, and before).
    /// </summary>
    private static bool HasHistoryFilter(JsonElement args) =>
        args.ValueKind == JsonValueKind.Object && args.EnumerateObject().Any(p => p.Name.ToLowerInvariant() is "queue" or "outcome" or "labels" or "since" or "until");

    private static bool TryParseHistoryFilter(JsonElement args, out Func<JobResult, bool> matches, out string problem)
    {
        matches = static _ => true;
        problem = string.Empty;
        HashSet<string>? queues = null, outcomes = null;
        Dictionary<string, string>? labels = null;
        DateTimeOffset? since = null, until = null;
        if (TryGetProperty(args, "queue", out var q))
        {
            if (!TryGetStrings(q, out var names))
            {
                problem = "\"queue\" must be a queue name or an array of them.";
                return false;
            }

            queues = [.. names];
        }

        if (TryGetProperty(args, "outcome", out var o))
        {
            var known = Enum.GetValues<JobOutcome>().Select(WireFormat.Outcome).ToList();
            if (!TryGetStrings(o, out var names) || names.Any(n => !known.Contains(n)))
            {
                problem = $"\"outcome\" must be one or an array of {string.Join(", ", known)}.";
                return false;
            }

            outcomes = [.. names];
        }

        if (TryGetProperty(args, "labels", out var l))
        {
            if (l.ValueKind != JsonValueKind.Object || l.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String))
            {
                problem = "\"labels\" must be an object whose values are strings.";
                return false;
            }

            labels = l.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal);
        }

        foreach (var (member, set) in new[] { ("since", (Action<DateTimeOffset>)(t => since = t)), ("until", t => until = t) })
        {
            if (TryGetProperty(args, member, out var t))
            {
                if (t.ValueKind != JsonValueKind.String || !DateTimeOffset.TryParse(t.GetString(), CultureInfo.InvariantCulture,
                    DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time))
                {
                    problem = $"\"{member}\" must be an ISO 8601 time, such as \"2026-01-01T00:00:00Z\".";
                    return false;
                }

                set(time);
            }
        }

        if (queues is null && outcomes is null && labels is null && since is null && until is null)
        {
            return true;
        }

        matches = r => (queues is null || queues.Contains(r.Queue))
            && (outcomes is null || outcomes.Contains(WireFormat.Outcome(r.Outcome)))
            && (labels is null || (r.Labels is { } have && labels.All(kv => have.TryGetValue(kv.Key, out var v) && v == kv.Value)))
            && (since is null || r.FinishedAt >= since)
            && (until is null || r.FinishedAt < until);
        return true;
    }

    private string? UnknownQueue(IEnumerable<string> queues)
    {
        var known = _dispatcher.GetQueues().Select(q => q.Name).ToList();
        return queues.FirstOrDefault(q => !known.Contains(q)) is { } unknown
            ? $"Unknown queue '{unknown}'; the queues are {string.Join(", ", known.Select(q => $"'{q}'"))}."
            : null;
    }

    private static JsonObject Queues(IEnumerable<QueueInfo> queues)
    {
        var o = new JsonObject();
        foreach (var q in queues)
        {
            o[q.Name] = WireFormat.Queue(q);
        }

        return o;
    }

    private static JsonObject Recurrences(IEnumerable<RecurrenceInfo> recurrences)
    {
        var o = new JsonObject();
        foreach (var r in recurrences)
        {
            var job = r.Recurrence.Job;
            var entry = new JsonObject
            {
                ["cron"] = r.Recurrence.Cron,
                ["time_zone"] = r.Recurrence.TimeZone ?? "UTC",
                ["queue"] = job.Queue,
                ["commands"] = new JsonArray([.. job.Commands.Select(c => (JsonNode?)c)]),
                ["next_run"] = WireFormat.Iso(r.NextOccurrence),
                ["last_run"] = WireFormat.Iso(r.LastOccurrence),
            };
            if (job.Labels is { Count: > 0 } labels)
            {
                entry["labels"] = WireFormat.Labels(labels);
            }

            o[r.Recurrence.Id] = entry;
        }

        return o;
    }

    /// <summary>The scheduling members of a job object in <c>run</c>, read one by one, then applied to the request.</summary>
    private sealed class SchedulingMembers
    {
        public const string Names = "after, priority, retry, delay, start_at, cron, time_zone, labels, stdin and idempotency_key";

        private IReadOnlyList<string>? _after;
        private int _priority;
        private RetryPolicy? _retry;
        private TimeSpan? _delay;
        private DateTimeOffset? _startAt;
        private string? _cron;
        private string? _timeZone;
        private Dictionary<string, string>? _labels;
        private string? _stdin;
        private string? _idempotencyKey;
        private IReadOnlyList<IReadOnlyList<string>?>? _vectors;

        /// <summary>Whether a <c>commands</c> array holds an argument vector (an array of strings) among its command strings.</summary>
        public static bool HasArgumentVector(JsonElement commands) =>
            commands.ValueKind == JsonValueKind.Array && commands.EnumerateArray().Any(c => c.ValueKind == JsonValueKind.Array);

        /// <summary>Reads <c>commands</c> whose items are command strings or argument vectors (non-empty arrays of strings).</summary>
        public bool TryReadCommands(JsonElement commands, out IReadOnlyList<string> display, out string problem)
        {
            display = [];
            problem = "Each command must be a command string or an argument vector: a non-empty array of strings, such as [\"printf\", \"%s\\n\", \"a b\"].";
            var texts = new List<string>();
            var vectors = new List<IReadOnlyList<string>?>();
            foreach (var item in commands.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.String)
                {
                    texts.Add(item.GetString()!);
                    vectors.Add(null);
                }
                else if (item.ValueKind == JsonValueKind.Array && item.GetArrayLength() > 0 && item.EnumerateArray().All(a => a.ValueKind == JsonValueKind.String))
                {
                    string[] argv = [.. item.EnumerateArray().Select(a => a.GetString()!)];
                    texts.Add(CommandLine.Join(argv));
                    vectors.Add(argv);
                }
                else
                {
                    return false;
                }
            }

            display = texts;
            _vectors = vectors;
            problem = string.Empty;
            return true;
        }

        /// <summary>Reads <paramref name="member"/> if it is a scheduling member: true when read, false with a problem when invalid, false with none when not one.</summary>
        public bool TryRead(JsonProperty member, out string problem)
        {
            problem = string.Empty;
            var value = member.Value;
            switch (member.Name)
            {
                case "after":
                    if (!TryGetStrings(value, out var after) || after.Any(a => a.Length == 0))
                    {
                        problem = "\"after\" must be a job id or an array of job ids.";
                        return false;
                    }

                    _after = after;
                    return true;
                case "priority":
                    if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out _priority))
                    {
                        problem = "\"priority\" must be a whole number (higher starts first).";
                        return false;
                    }

                    return true;
                case "delay":
                    if (!TrySeconds(value, out var delay))
                    {
                        problem = "\"delay\" must be a number of seconds, 0 or more.";
                        return false;
                    }

                    _delay = delay;
                    return true;
                case "start_at":
                    if (value.ValueKind != JsonValueKind.String || !DateTimeOffset.TryParse(value.GetString(), CultureInfo.InvariantCulture,
                        DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
                    {
                        problem = "\"start_at\" must be an ISO 8601 time, such as \"2026-01-01T02:00:00Z\" (UTC unless it has an offset).";
                        return false;
                    }

                    _startAt = at;
                    return true;
                case "retry":
                    return TryReadRetry(value, out problem);
                case "cron" or "time_zone":
                    if (value.ValueKind != JsonValueKind.String)
                    {
                        problem = $"\"{member.Name}\" must be a string.";
                        return false;
                    }

                    if (member.Name == "cron")
                    {
                        _cron = value.GetString();
                    }
                    else
                    {
                        _timeZone = value.GetString();
                    }

                    return true;
                case "idempotency_key":
                    if (value.ValueKind != JsonValueKind.String || value.GetString()!.Length == 0)
                    {
                        problem = "\"idempotency_key\" must be a non-empty string.";
                        return false;
                    }

                    _idempotencyKey = value.GetString();
                    return true;
                case "stdin":
                    if (value.ValueKind != JsonValueKind.String)
                    {
                        problem = "\"stdin\" must be a string (the text every command of the job reads on its standard input).";
                        return false;
                    }

                    _stdin = value.GetString();
                    return true;
                case "labels":
                    if (value.ValueKind != JsonValueKind.Object || value.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String))
                    {
                        problem = "\"labels\" must be an object whose values are strings.";
                        return false;
                    }

                    _labels = value.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal);
                    return true;
                default:
                    return false;
            }
        }

        /// <summary>Sets the members on the request; with <c>cron</c>, the request becomes the job of a recurrence.</summary>
        public bool TryApply(ref JobRequest request, out Recurrence? recurrence, out string problem)
        {
            recurrence = null;
            problem = string.Empty;
            if (_delay is not null && _startAt is not null)
            {
                problem = "Give \"delay\" or \"start_at\", not both.";
                return false;
            }

            if (_timeZone is not null && _cron is null)
            {
                problem = "\"time_zone\" goes with \"cron\".";
                return false;
            }

            if (_cron is not null && (_after is not null || _delay is not null || _startAt is not null))
            {
                problem = "A recurring job (\"cron\") cannot also have \"after\", \"delay\" or \"start_at\".";
                return false;
            }

            request = request with
            {
                After = _after,
                Priority = _priority,
                Retry = _retry,
                Delay = _delay,
                StartAt = _startAt,
                Labels = _labels,
                StandardInput = _stdin,
                ArgumentVectors = _vectors,
                IdempotencyKey = _idempotencyKey,
            };
            if (_cron is not null)
            {
                recurrence = new Recurrence(request.Id, _cron, request) { TimeZone = _timeZone };
            }

            return true;
        }

        private bool TryReadRetry(JsonElement value, out string problem)
        {
            problem = "\"retry\" must be a count of retries, or {\"count\": N, \"delay\": seconds, \"backoff\": factor of 1 or more}.";
            if (value.ValueKind == JsonValueKind.Number)
            {
                if (!value.TryGetInt32(out var n) || n < 0)
                {
                    return false;
                }

                _retry = new RetryPolicy(n, TimeSpan.Zero);
                problem = string.Empty;
                return true;
            }

            if (value.ValueKind != JsonValueKind.Object)
            {
                return false;
            }

            var count = 0;
            var delay = TimeSpan.Zero;
            var backoff = 1.0;
            foreach (var p in value.EnumerateObject())
            {
                switch (p.Name)
                {
                    case "count" when p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out count) && count >= 0:
                        break;
                    case "delay" when TrySeconds(p.Value, out delay):
                        break;
                    case "backoff" when p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetDouble(out backoff) && backoff >= 1 && backoff <= 1000:
                        break;
                    default:
                        return false;
                }
            }

            _retry = new RetryPolicy(count, delay, backoff);
            problem = string.Empty;
            return true;
        }

        private static bool TrySeconds(JsonElement value, out TimeSpan span)
        {
            span = TimeSpan.Zero;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var seconds) || seconds < 0 || seconds > 10 * 365 * 86400.0)
            {
                return false;
            }

            span = TimeSpan.FromSeconds(seconds);
            return true;
        }
    }
}
