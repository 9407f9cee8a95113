using System.Text.Json;
using System.Text.Json.Nodes;

namespace Dispatcher.Protocol.Routing;

/// <summary>
/// <c>rpc/dispatcher</c>: <c>list</c> and <c>history</c> (read access), <c>run</c> and <c>kill</c> (full access), mapped onto
/// <see cref="IDispatcher"/>.
/// </summary>
internal sealed class DispatcherActions(IDispatcher dispatcher) : IProtocolHandler
{
    public async ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken)
    {
        var args = request.Args;
        if (args.ValueKind != JsonValueKind.Object)
        {
            return Bad($"rpc/dispatcher needs args that are an object with an \"action\", not {JsonArgs.Describe(args.ValueKind)}.");
        }

        if (!JsonArgs.TryGetString(args, "action", out var action, out var problem))
        {
            return Bad(problem + " rpc/dispatcher offers the actions list, kill, run and history.");
        }

        switch (action.ToLowerInvariant())
        {
            case "list":
                return ProtocolResult.OkRaw(WireFormat.ListUtf8(dispatcher.List()));
            case "history":
                return History(args);
            case "kill":
                return Forbidden(request, "kill") ?? await KillAsync(args, cancellationToken).ConfigureAwait(false);
            case "run":
                return Forbidden(request, "run") ?? await RunAsync(args, cancellationToken).ConfigureAwait(false);
            default:
                return Bad($"Unknown action '{action}'; rpc/dispatcher offers list, kill, run and history.");
        }
    }

    private static ProtocolResult? Forbidden(ProtocolRequest request, string what) =>
        request.Connection.Access >= DispatcherAccess.Full
            ? null
            : ProtocolResult.Error(ProtocolErrorCode.Forbidden, $"Forbidden: {what} needs full access; user '{request.Connection.User?.Name}' has read access.");

    private static ProtocolResult Bad(string message) => ProtocolResult.Error(ProtocolErrorCode.BadRequest, message);

    /// <summary>The extension action <c>history</c>: retained results of finished jobs, oldest first, optionally only some ids.</summary>
    private ProtocolResult History(JsonElement args)
    {
        HashSet<string>? only = null;
        if (JsonArgs.TryGetProperty(args, "job_id", out var jobId))
        {
            if (!JsonArgs.TryGetStrings(jobId, out var ids))
            {
                return Bad($"\"job_id\" must be a string or an array of strings, not {JsonArgs.Describe(jobId.ValueKind)}.");
            }

            only = [.. ids];
        }

        var history = new JsonArray();
        foreach (var result in dispatcher.ListFinished())
        {
            if (only is null || only.Contains(result.Id))
            {
                history.Add(WireFormat.FinishedDetails(result));
            }
        }

        return ProtocolResult.Ok(new JsonObject { ["history"] = history });
    }

    private async ValueTask<ProtocolResult> KillAsync(JsonElement args, CancellationToken cancellationToken)
    {
        if (!JsonArgs.TryGetProperty(args, "job_id", out var jobId))
        {
            return Bad("kill needs \"job_id\": a job id or an array of job ids.");
        }

        if (!JsonArgs.TryGetStrings(jobId, out var ids))
        {
            return Bad($"\"job_id\" must be a string or an array of strings, not {JsonArgs.Describe(jobId.ValueKind)}.");
        }

        var killed = await dispatcher.KillAsync(ids, cancellationToken).ConfigureAwait(false);
        return ProtocolResult.Ok(new JsonObject
        {
            ["killed"] = new JsonObject { ["jobs"] = new JsonArray([.. killed.Select(k => (JsonNode?)k)]) },
        });
    }

    private async ValueTask<ProtocolResult> RunAsync(JsonElement args, CancellationToken cancellationToken)
    {
        var started = new JsonArray();
        var rejected = new JsonObject();
        var any = false;
        foreach (var job in args.EnumerateObject())
        {
            if (string.Equals(job.Name, "action", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            any = true;
            if (!TryParseJob(job.Name, job.Value, out var request, out var problem))
            {
                rejected[job.Name] = problem;
                continue;
            }

            try
            {
                await dispatcher.EnqueueAsync(request, cancellationToken).ConfigureAwait(false);
                started.Add((JsonNode?)job.Name);
            }
            catch (JobRejectedException ex)
            {
                rejected[job.Name] = ex.Message;
            }
        }

        if (!any)
        {
            return Bad("run needs at least one job: {\"action\": \"run\", \"JOB_ID\": \"command\" or [\"command\", ...]}.");
        }

        var result = new JsonObject { ["started"] = started };
        if (rejected.Count > 0)
        {
            result["rejected"] = rejected;
        }

        return ProtocolResult.Ok(result);
    }

    /// <summary>A run value: a command string, an array of command strings, or an object with commands and options.</summary>
    internal static bool TryParseJob(string jobId, JsonElement value, out JobRequest request, out string problem)
    {
        request = null!;
        problem = string.Empty;
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                request = new JobRequest(jobId, [value.GetString()!]);
                return true;
            case JsonValueKind.Array:
                if (!TryGetCommands(value, out var commands, out problem))
                {
                    return false;
                }

                request = new JobRequest(jobId, commands);
                return true;
            case JsonValueKind.Object:
                return TryParseJobObject(jobId, value, out request, out problem);
            default:
                problem = $"A job must be a command string, an array of command strings or an object with \"commands\", not {JsonArgs.Describe(value.ValueKind)}.";
                return false;
        }
    }

    private static bool TryParseJobObject(string jobId, JsonElement value, out JobRequest request, out string problem)
    {
        request = null!;
        problem = string.Empty;
        IReadOnlyList<string>? commands = null;
        string? queue = null, workdir = null;
        Dictionary<string, string>? env = null;
        TimeSpan? timeout = null;
        var rerun = false;
        foreach (var member in value.EnumerateObject())
        {
            switch (member.Name)
            {
                case "commands" when member.Value.ValueKind == JsonValueKind.String:
                    commands = [member.Value.GetString()!];
                    break;
                case "commands":
                    if (!TryGetCommands(member.Value, out var list, out problem))
                    {
                        return false;
                    }

                    commands = list;
                    break;
                case "queue" when member.Value.ValueKind == JsonValueKind.String:
                    queue = member.Value.GetString();
                    break;
                case "workdir" when member.Value.ValueKind == JsonValueKind.String:
                    workdir = member.Value.GetString();
                    break;
                case "env" when member.Value.ValueKind == JsonValueKind.Object
                    && member.Value.EnumerateObject().All(p => p.Value.ValueKind == JsonValueKind.String):
                    env = member.Value.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal);
                    break;
                case "timeout" when member.Value.ValueKind == JsonValueKind.Number && member.Value.TryGetDouble(out var seconds)
                    && seconds > 0 && seconds <= TimeSpan.MaxValue.TotalSeconds / 2:
                    timeout = TimeSpan.FromSeconds(seconds);
                    break;
                case "rerun_if_interrupted" when member.Value.ValueKind is JsonValueKind.True or JsonValueKind.False:
                    rerun = member.Value.GetBoolean();
                    break;
                case "rerun_if_interrupted":
                    problem = "\"rerun_if_interrupted\" must be true or false.";
                    return false;
                case "queue" or "workdir":
                    problem = $"\"{member.Name}\" must be a string.";
                    return false;
                case "env":
                    problem = "\"env\" must be an object whose values are strings.";
                    return false;
                case "timeout":
                    problem = "\"timeout\" must be a positive number of seconds.";
                    return false;
                default:
                    problem = $"Unknown member \"{member.Name}\"; a job object may have commands, queue, workdir, env, timeout and rerun_if_interrupted.";
                    return false;
            }
        }

        if (commands is null)
        {
            problem = "A job object needs \"commands\": a command string or an array of command strings.";
            return false;
        }

        request = new JobRequest(jobId, commands)
        {
            Queue = queue ?? DispatcherQueues.NoQueue,
            WorkingDirectory = workdir,
            Environment = env,
            Timeout = timeout,
            RerunIfInterrupted = rerun,
        };
        return true;
    }

    private static bool TryGetCommands(JsonElement array, out IReadOnlyList<string> commands, out string problem)
    {
        commands = [];
        problem = string.Empty;
        if (array.ValueKind != JsonValueKind.Array || array.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
        {
            problem = "Commands must be a string or an array of strings.";
            return false;
        }

        commands = [.. array.EnumerateArray().Select(e => e.GetString()!)];
        return true;
    }
}
