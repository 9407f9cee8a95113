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

    public static JsonObject List(IReadOnlyList<JobInfo> jobs)
    {
        var queues = new JsonObject();
        foreach (var job in jobs)
        {
            if (queues[job.Queue] is not JsonObject queue)
            {
                queues[job.Queue] = queue = [];
            }

            var entry = new JsonObject
            {
                ["commands"] = new JsonArray([.. job.Commands.Select(c => (JsonNode?)c)]),
            };
            if (job.QueuePosition is { } position)
            {
                entry["queue_position"] = position.ToString(CultureInfo.InvariantCulture);
            }

            entry["state"] = job.State == JobState.Running ? "running" : "pending";
            queue[job.Id] = entry;
        }

        return new JsonObject { ["jobs"] = queues };
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
        AddCommandResults(details, result);
        return details;
    }

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
        _ => "interrupted",
    };
}
