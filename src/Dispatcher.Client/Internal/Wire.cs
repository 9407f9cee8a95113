using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Dispatcher.Client.Internal;

/// <summary>Builds requests and reads replies and events of the dispatcher envelope (docs/protocol.md).</summary>
internal static class Wire
{
    /// <summary>
    /// The request's envelope as UTF-8 JSON. <paramref name="args"/> is written, not attached: a request sent again (after a
    /// lapsed login) reuses it, and a node can have one parent only ("The node already has a parent" on the second send).
    /// </summary>
    public static byte[] Envelope(string ns, string name, string id, JsonNode? args)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("namespace", ns);
            writer.WriteString("name", name);
            writer.WriteString("id", id);
            writer.WritePropertyName("args");
            if (args is null)
            {
                writer.WriteNullValue();
            }
            else
            {
                args.WriteTo(writer);
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The reply's <c>args</c>, or the server's error as an exception.</summary>
    public static JsonNode? ReplyArgs(JsonObject frame)
    {
        var args = frame["args"];
        if ((string?)frame["name"] == "error" || (string?)frame["namespace"] == "error")
        {
            throw Error(args);
        }

        return args;
    }

    public static DispatcherClientException Error(JsonNode? args)
    {
        var code = args is JsonObject o ? Text(o["code"]) : null;
        var message = args is JsonObject m ? Text(m["message"]) : null;
        return new DispatcherClientException(code ?? "?", message ?? $"The server answered an error without a message: {args?.ToJsonString()}");
    }

    public static string? Text(JsonNode? node) => node is JsonValue v && v.GetValueKind() is JsonValueKind.String or JsonValueKind.Number ? v.ToString() : null;

    public static JsonObject Object(JsonNode? node, string what) =>
        node as JsonObject ?? throw new DispatcherClientException($"The server's {what} reply is not a JSON object: {Show(node)}");

    public static string Show(JsonNode? node)
    {
        var s = node?.ToJsonString() ?? "null";
        return s.Length <= 200 ? s : s[..200] + "…";
    }

    public static IReadOnlyList<string> Strings(JsonNode? node) => node switch
    {
        JsonArray a => a.Select(Text).Where(s => s is not null).Select(s => s!).ToArray(),
        JsonValue v when Text(v) is { } s => [s],
        _ => [],
    };

    public static IReadOnlyList<RemoteJob> Jobs(JsonNode? reply)
    {
        var jobs = new List<RemoteJob>();
        if (Object(reply, "list")["jobs"] is not JsonObject queues)
        {
            return jobs;
        }

        foreach (var (queue, members) in queues)
        {
            if (members is not JsonObject byId)
            {
                continue;
            }

            foreach (var (id, value) in byId)
            {
                var job = value as JsonObject;
                jobs.Add(new RemoteJob
                {
                    Id = id,
                    Queue = queue,
                    State = Text(job?["state"]) ?? "unknown",
                    Commands = Strings(job?["commands"]),
                    QueuePosition = int.TryParse(Text(job?["queue_position"]), NumberStyles.None, CultureInfo.InvariantCulture, out var p) ? p : null,
                });
            }
        }

        return jobs;
    }

    public static JsonNode JobValue(RemoteJobSpec spec)
    {
        ArgumentException.ThrowIfNullOrEmpty(spec.Id, nameof(spec));
        if (spec.Commands is null || spec.Commands.Count == 0)
        {
            throw new ArgumentException($"Job '{spec.Id}' has no commands.", nameof(spec));
        }

        var commands = new JsonArray(spec.Commands.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray());
        if (spec.Queue is null && spec.WorkingDirectory is null && spec.Environment is null && spec.Timeout is null
            && spec.RerunIfInterrupted is null && spec.Priority is null && spec.After is null && spec.Delay is null
            && spec.StartAt is null && spec.Retry is null && spec.Labels is null && spec.StandardInput is null
            && spec.IdempotencyKey is null && spec.Limits is null && spec.RunAs is null
            && spec.AdditionalMembers is not { Count: > 0 })
        {
            // The array form: what every sysadm server accepts.
            return commands;
        }

        var o = new JsonObject { ["commands"] = commands };
        if (spec.Queue is not null)
        {
            o["queue"] = spec.Queue;
        }

        if (spec.WorkingDirectory is not null)
        {
            o["workdir"] = spec.WorkingDirectory;
        }

        if (spec.Environment is not null)
        {
            var env = new JsonObject();
            foreach (var (k, v) in spec.Environment)
            {
                env[k] = v;
            }

            o["env"] = env;
        }

        if (spec.Timeout is { } t)
        {
            o["timeout"] = t.TotalSeconds;
        }

        if (spec.RerunIfInterrupted is { } r)
        {
            o["rerun_if_interrupted"] = r;
        }

        if (spec.Priority is { } priority)
        {
            o["priority"] = priority;
        }

        if (spec.After is { } after)
        {
            o["after"] = new JsonArray(after.Select(a => (JsonNode?)JsonValue.Create(a)).ToArray());
        }

        if (spec.Delay is { } delay)
        {
            o["delay"] = delay.TotalSeconds;
        }

        if (spec.StartAt is { } startAt)
        {
            o["start_at"] = startAt.ToString("O", CultureInfo.InvariantCulture);
        }

        if (spec.Retry is { } retry)
        {
            if (retry.Delay is null && retry.Backoff is null)
            {
                o["retry"] = retry.Count;
            }
            else
            {
                var policy = new JsonObject { ["count"] = retry.Count };
                if (retry.Delay is { } retryDelay)
                {
                    policy["delay"] = retryDelay.TotalSeconds;
                }

                if (retry.Backoff is { } backoff)
                {
                    policy["backoff"] = backoff;
                }

                o["retry"] = policy;
            }
        }

        if (spec.Labels is { } labels)
        {
            var l = new JsonObject();
            foreach (var (k, v) in labels)
            {
                l[k] = v;
            }

            o["labels"] = l;
        }

        if (spec.StandardInput is { } stdin)
        {
            o["stdin"] = stdin;
        }

        if (spec.IdempotencyKey is { } key)
        {
            o["idempotency_key"] = key;
        }

        if (spec.Limits is { } limits)
        {
            var l = new JsonObject();
            if (limits.MemoryBytes is { } memory)
            {
                l["memory_bytes"] = memory;
            }

            if (limits.MaxProcesses is { } processes)
            {
                l["max_processes"] = processes;
            }

            if (limits.CpuWeight is { } weight)
            {
                l["cpu_weight"] = weight;
            }

            o["limits"] = l;
        }

        if (spec.RunAs is { } runAs)
        {
            o["run_as"] = runAs;
        }

        foreach (var (k, v) in spec.AdditionalMembers ?? new Dictionary<string, JsonNode?>())
        {
            o[k] = v?.DeepClone();
        }

        return o;
    }

    public static RemoteRunResult RunResult(JsonNode? reply)
    {
        var o = Object(reply, "run");
        var rejected = new Dictionary<string, string>(StringComparer.Ordinal);
        if (o["rejected"] is JsonObject r)
        {
            foreach (var (id, why) in r)
            {
                rejected[id] = Text(why) ?? Show(why);
            }
        }

        return new RemoteRunResult { Started = Strings(o["started"]), Rejected = rejected };
    }

    public static RemoteJobResult JobResult(JsonObject details, string? fallbackId = null)
    {
        var commands = Strings(details["cmd_list"]);
        var results = new List<RemoteCommandResult>();
        foreach (var command in commands.Distinct(StringComparer.Ordinal))
        {
            var output = Text(details[command]);
            var code = Text(details["return_codes/" + command]);
            if (output is null && code is null)
            {
                continue;
            }

            results.Add(new RemoteCommandResult
            {
                Command = command,
                Output = output ?? string.Empty,
                ExitCode = int.TryParse(code, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var c) ? c : null,
            });
        }

        return new RemoteJobResult
        {
            Id = Text(details["process_id"]) ?? fallbackId ?? string.Empty,
            State = Text(details["state"]) ?? "unknown",
            Queue = Text(details["queue"]),
            Commands = commands,
            Outcome = Text(details["outcome"]),
            StartedAt = Time(details["time_started"]),
            FinishedAt = Time(details["time_finished"]),
            CurrentCommand = Text(details["current_cmd"]),
            Results = results,
            Raw = details,
        };
    }

    /// <summary>One <c>history</c> page and the cursor of the next (null on the last page).</summary>
    public static (IReadOnlyList<RemoteJobResult> Page, string? Next) History(JsonNode? reply)
    {
        var args = Object(reply, "history");
        var page = args["history"] is JsonArray a ? a.OfType<JsonObject>().Select(d => JobResult(d)).ToArray() : [];
        return (page, Text(args["next"]));
    }

    public static RemoteEvent Event(JsonObject frame)
    {
        var name = Text(frame["name"]) ?? string.Empty;
        var args = frame["args"] as JsonObject ?? [];
        var kind = name != "dispatcher" ? RemoteEventKind.Other : Text(args["state"]) switch
        {
            "pending" => RemoteEventKind.JobPending,
            "running" => RemoteEventKind.JobRunning,
            "finished" => RemoteEventKind.JobFinished,
            "gap" => RemoteEventKind.Gap,
            _ => RemoteEventKind.Other,
        };
        var id = Text(args["process_id"]);
        return new RemoteEvent
        {
            Kind = kind,
            Name = name,
            JobId = kind == RemoteEventKind.Gap ? null : id,
            Sequence = Sequence(frame["seq"]),
            Details = args["process_details"] is JsonObject d ? JobResult(d, id) : null,
            Args = args,
        };
    }

    public static long? Sequence(JsonNode? node) =>
        node is JsonValue v && v.TryGetValue<long>(out var n) ? n : null;

    private static DateTimeOffset? Time(JsonNode? node) =>
        DateTimeOffset.TryParse(Text(node), CultureInfo.InvariantCulture, DateTimeStyles.None, out var t) ? t : null;
}
