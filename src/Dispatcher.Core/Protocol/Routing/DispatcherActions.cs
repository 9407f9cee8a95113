using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using static Dispatcher.Protocol.JsonArgs;

namespace Dispatcher.Protocol.Routing;

/// <summary>
/// <c>rpc/dispatcher</c>: the sysadm actions (<c>list</c>, <c>kill</c>, <c>run</c>), <c>history</c>, and the scheduling actions
/// (<c>DispatcherActions.Scheduling.cs</c>), mapped onto <see cref="IDispatcher"/>. The route table has checked read access; run,
/// kill and the changing scheduling actions check full access here.
/// </summary>
internal sealed partial class DispatcherActions(IDispatcher dispatcher, DispatcherProtocolOptions options, ILogger logger, CancellationToken stopping,
    IJobPolicy? policy = null, AuditTrail? audit = null)
    : IProtocolHandler
{
    private readonly IDispatcher _dispatcher = dispatcher;
    private readonly IJobPolicy? _policy = policy;
    private readonly AuditTrail? _audit = audit;
    private readonly DispatcherProtocolOptions _options = options;
    private readonly CancellationToken _stopping = stopping;
    private readonly ILogger _logger = logger;

    public async ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken)
    {
        var reply = await DispatcherAsync(request.Connection, request.Namespace, request.Name, request.Id, request.Args, cancellationToken).ConfigureAwait(false);
        return reply.Status == 200
            ? reply.RawArgs is { } raw ? ProtocolResult.OkRaw(raw) : ProtocolResult.Ok(reply.Args)
            : ProtocolResult.Error((ProtocolErrorCode)reply.Status, reply.Message ?? "Error.");
    }

    private static string Short(string text) => EnvelopeReader.Short(text);

    private static ProtocolReply Ok(string ns, string name, string? id, JsonNode? args) => new(args, 200, null);

    private static ProtocolReply Error(string? id, int code, string message) => new(null, code, message);

    /// <summary>The route table already required read access; this checks the stronger ones.</summary>
    private static ProtocolReply? Require(ProtocolConnection session, string? id, DispatcherAccess needed, string? what = null)
    {
        var access = session.Access;
        if (access == DispatcherAccess.None)
        {
            return Error(id, 401, "Not authenticated: send rpc/auth, rpc/auth_ssl or rpc/auth_token first.");
        }

        return access < needed ? Error(id, 403, $"Forbidden: {what ?? "this request"} needs full access; user '{session.User?.Name}' has read access.") : null;
    }

    /// <summary>An action's answer before it becomes a <see cref="ProtocolResult"/>.</summary>
    private sealed record ProtocolReply(JsonNode? Args, int Status, string? Message)
    {
        public byte[]? RawArgs { get; init; }
    }

    private async ValueTask<ProtocolReply> DispatcherAsync(ProtocolConnection session, string ns, string name, string? id, JsonElement args,
        CancellationToken cancellationToken)
    {
        if (Require(session, id, DispatcherAccess.Read) is { } denied)
        {
            return denied;
        }

        if (args.ValueKind != JsonValueKind.Object)
        {
            return Error(id, 400, $"rpc/dispatcher needs args that are an object with an \"action\", not {Describe(args.ValueKind)}.");
        }

        if (!TryGetString(args, "action", out var action, out var problem))
        {
            return Error(id, 400, problem + " rpc/dispatcher offers the actions list, kill, run and history.");
        }

        switch (action.ToLowerInvariant())
        {
            case "list":
                return Ok(ns, name, id, null) with { RawArgs = WireFormat.ListUtf8(_dispatcher.List()) };
            case "history":
                return History(ns, name, id, args, cancellationToken);
            case "kill":
                return Require(session, id, DispatcherAccess.Full, "kill") ?? await KillAsync(session, ns, name, id, args, cancellationToken).ConfigureAwait(false);
            case "run":
                return Require(session, id, DispatcherAccess.Full, "run") ?? Stopping(id) ?? RunProblem(id, args) ?? await RunAsync(session, ns, name, id, args, cancellationToken).ConfigureAwait(false);
            default:
                return await SchedulingActionAsync(session, ns, name, id, action.ToLowerInvariant(), args, cancellationToken).ConfigureAwait(false)
                    ?? Error(id, 400, $"Unknown action '{Short(action)}'; rpc/dispatcher offers list, kill, run, history, {SchedulingActionNames}.");
        }
    }

    /// <summary>
    /// The extension action <c>history</c>: retained results of finished jobs, oldest first, optionally only some ids, one page at a
    /// time (<c>limit</c> results at most, and no more bytes than <see cref="DispatcherProtocolOptions.MaxHistoryReplyBytes"/> unless
    /// one job alone is larger); <c>next</c> is the cursor to pass as <c>after</c> for the following page.
    /// </summary>
    private ProtocolReply History(string ns, string name, string? id, JsonElement args, CancellationToken cancellationToken)
    {
        HashSet<string>? only = null;
        if (TryGetProperty(args, "job_id", out var jobId))
        {
            if (!TryGetStrings(jobId, out var ids))
            {
                return Error(id, 400, $"\"job_id\" must be a string or an array of strings, not {Describe(jobId.ValueKind)}.");
            }

            only = [.. ids];
        }

        if (!TryParseHistoryFilter(args, out var matches, out var filterProblem))
        {
            return Error(id, 400, filterProblem);
        }

        var limit = _options.HistoryPageSize;
        if (TryGetProperty(args, "limit", out var limitElement)
            && (limitElement.ValueKind != JsonValueKind.Number || !limitElement.TryGetInt32(out limit) || limit < 1 || limit > _options.MaxHistoryPageSize))
        {
            return Error(id, 400, $"\"limit\" must be a whole number from 1 to {_options.MaxHistoryPageSize}.");
        }

        HistoryCursor? after = null;
        if (TryGetProperty(args, "after", out var afterElement) && afterElement.ValueKind != JsonValueKind.Null)
        {
            if (afterElement.ValueKind != JsonValueKind.String || HistoryCursor.Parse(afterElement.GetString()!) is not { } cursor)
            {
                return Error(id, 400, "\"after\" must be the \"next\" value of a previous history reply.");
            }

            after = cursor;
        }

        var results = _dispatcher.ListFinished();
        if (HasHistoryFilter(args))
        {
            // Filtered first: a page holds up to limit matching jobs, and the cursor (an id and a finish time) finds its place among them.
            results = [.. results.Where(matches)];
        }

        var start = after?.StartIn(results) ?? 0;
        var page = WireFormat.HistoryPageUtf8(results, start, only, limit, _options.MaxHistoryReplyBytes, cancellationToken);
        return Ok(ns, name, id, null) with { RawArgs = page };
    }

    /// <summary><c>run</c> refused while the host stops: a job accepted now would be interrupted at once.</summary>
    private ProtocolReply? Stopping(string? id) => _stopping.IsCancellationRequested
        ? Error(id, 503, "The server is stopping and accepts no new jobs; send them again once it is back.")
        : null;

    /// <summary>Environment names the operating system cannot take: empty, or with '=' (NUL is refused for every string).</summary>
    private static ProtocolReply? RunProblem(string? id, JsonElement args)
    {
        foreach (var job in args.EnumerateObject())
        {
            if (job.Value.ValueKind != JsonValueKind.Object || !job.Value.TryGetProperty("env", out var env) || env.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            foreach (var variable in env.EnumerateObject())
            {
                if (variable.Name.Length == 0 || variable.Name.Contains('=', StringComparison.Ordinal))
                {
                    return Error(id, 400, $"Job '{Short(job.Name)}': \"env\" has the variable name '{Short(variable.Name)}'; a name must be non-empty and hold no '='.");
                }
            }
        }

        return null;
    }

    private async ValueTask<ProtocolReply> KillAsync(ProtocolConnection session, string ns, string name, string? id, JsonElement args, CancellationToken cancellationToken)
    {
        if (!TryGetProperty(args, "job_id", out var jobId))
        {
            return Error(id, 400, "kill needs \"job_id\": a job id or an array of job ids.");
        }

        if (!TryGetStrings(jobId, out var ids))
        {
            return Error(id, 400, $"\"job_id\" must be a string or an array of strings, not {Describe(jobId.ValueKind)}.");
        }

        var killed = await _dispatcher.KillAsync(ids, cancellationToken).ConfigureAwait(false);
        _audit?.Kill(session, ids, killed);
        return Ok(ns, name, id, new JsonObject
        {
            ["killed"] = new JsonObject { ["jobs"] = new JsonArray([.. killed.Select(k => (JsonNode?)k)]) },
        });
    }

    private async ValueTask<ProtocolReply> RunAsync(ProtocolConnection session, string ns, string name, string? id, JsonElement args, CancellationToken cancellationToken)
    {
        var started = new JsonArray();
        var result = new JsonObject { ["started"] = started };
        var rejected = new JsonObject();
        var any = false;

        // The request's audit lines, in the order they are recorded here, go to the audit file in one write before the reply.
        using var audit = _audit?.BeginBatch();

        // Every job is handed to the dispatcher first (in request order), and the durable acknowledgements are awaited after:
        // one group commit covers the whole request instead of one flush per job. Replies keep the request order.
        var outcomes = new List<(string Name, Task<JobInfo>? Enqueued, string? Problem, JobRequest? Submitted, bool Rewritten)>();
        foreach (var job in args.EnumerateObject())
        {
            if (string.Equals(job.Name, "action", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            any = true;
            if (job.Name == "jobs" && IsJobArray(job.Value))
            {
                // The extension: an array of job objects whose ids the dispatcher generates.
                var index = 0;
                foreach (var item in job.Value.EnumerateArray())
                {
                    var key = $"jobs[{index++}]";
                    if (!TryParseJob(string.Empty, item, out var generated, out var cron, out var why) || cron is not null)
                    {
                        outcomes.Add((key, null, cron is not null ? "A recurring job (\"cron\") needs a name; give it as a member of run, not in \"jobs\"." : why, null, false));
                        continue;
                    }

                    var (allowedItem, rejectionItem, rewrittenItem) = await ApplyPolicyAsync(session, generated, audit, cancellationToken).ConfigureAwait(false);
                    outcomes.Add(allowedItem is null
                        ? (key, null, rejectionItem, null, false)
                        : (key, _dispatcher.EnqueueAsync(allowedItem with { GeneratesId = true }, cancellationToken).AsTask(), null, allowedItem, rewrittenItem));
                }

                continue;
            }

            if (!TryParseJob(job.Name, job.Value, out var request, out var recurrence, out var problem))
            {
                outcomes.Add((job.Name, null, problem, null, false));
                continue;
            }

            // The host's policy sees every job a client submits (a recurrence's template too) before the dispatcher does.
            var (allowed, rejection, rewritten) = await ApplyPolicyAsync(session, recurrence?.Job ?? request, audit, cancellationToken).ConfigureAwait(false);
            if (allowed is null)
            {
                outcomes.Add((job.Name, null, rejection, null, false));
                continue;
            }

            if (recurrence is not null)
            {
                try
                {
                    await _dispatcher.AddRecurrenceAsync(recurrence with { Job = allowed }, cancellationToken).ConfigureAwait(false);
                    ((JsonArray)(result["recurring"] ??= new JsonArray())).Add((JsonNode?)job.Name);
                    _audit?.Run(session, allowed, null, rewritten, audit);
                }
                catch (JobRejectedException ex)
                {
                    outcomes.Add((job.Name, null, ex.Message, null, false));
                }

                continue;
            }

            outcomes.Add((job.Name, _dispatcher.EnqueueAsync(allowed, cancellationToken).AsTask(), null, allowed, rewritten));
        }

        foreach (var (jobName, enqueued, problem, submitted, rewritten) in outcomes)
        {
            try
            {
                if (enqueued is null)
                {
                    rejected[jobName] = problem;
                    continue;
                }

                var info = await enqueued.ConfigureAwait(false);
                started.Add((JsonNode?)info.Id);
                if (submitted is not null)
                {
                    _audit?.Run(session, submitted with { Id = info.Id }, null, rewritten, audit);
                }
            }
            catch (JobRejectedException ex)
            {
                rejected[jobName] = ex.Message;
            }
        }

        if (!any)
        {
            return Error(id, 400, "run needs at least one job: {\"action\": \"run\", \"JOB_ID\": \"command\" or [\"command\", ...]}.");
        }

        if (rejected.Count > 0)
        {
            result["rejected"] = rejected;
        }

        return Ok(ns, name, id, result);
    }

    /// <summary>
    /// What the host's policy makes of a submitted job: the job to run (the submitted one, or its rewrite with the same id), or
    /// <see langword="null"/> and the rejection the client sees (audited here).
    /// </summary>
    private async ValueTask<(JobRequest? Allowed, string? Rejection, bool Rewritten)> ApplyPolicyAsync(ProtocolConnection session, JobRequest request,
        AuditTrail.Batch? audit, CancellationToken cancellationToken)
    {
        if (_policy is null || session.User is not { } user)
        {
            return (request, null, false);
        }

        var decision = await _policy.EvaluateAsync(new JobPolicyContext(request, user, session.Transport, session.RemoteAddress), cancellationToken)
            .ConfigureAwait(false);
        if (decision.Rejection is { } rejection)
        {
            _audit?.Run(session, request, rejection, rewritten: false, audit);
            return (null, $"Rejected by the host's policy: {rejection}", false);
        }

        return decision.Rewritten is { } replacement ? (replacement with { Id = request.Id }, null, true) : (request, null, false);
    }

    private static bool IsJobArray(JsonElement value) =>
        value.ValueKind == JsonValueKind.Array && value.GetArrayLength() > 0 && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Object);

    /// <summary>A run value: a command string, an array of command strings, or an object with commands and options.</summary>
    internal static bool TryParseJob(string jobId, JsonElement value, out JobRequest request, out Recurrence? recurrence, out string problem)
    {
        request = null!;
        recurrence = null;
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
                return TryParseJobObject(jobId, value, out request, out recurrence, out problem);
            default:
                problem = $"A job must be a command string, an array of command strings or an object with \"commands\", not {Describe(value.ValueKind)}.";
                return false;
        }
    }

    private static bool TryParseJobObject(string jobId, JsonElement value, out JobRequest request, out Recurrence? recurrence, out string problem)
    {
        request = null!;
        recurrence = null;
        var scheduling = new SchedulingMembers();
        problem = string.Empty;
        IReadOnlyList<string>? commands = null;
        string? queue = null, workdir = null;
        Dictionary<string, string>? env = null;
        TimeSpan? timeout = null;
        var rerun = false;
        JobLimits? limits = null;
        string? runAs = null;
        foreach (var member in value.EnumerateObject())
        {
            switch (member.Name)
            {
                case "limits":
                    if (!TryReadLimits(member.Value, out limits, out problem))
                    {
                        return false;
                    }

                    break;
                case "run_as" when member.Value.ValueKind == JsonValueKind.String && member.Value.GetString() is { Length: > 0 } user:
                    runAs = user;
                    break;
                case "run_as":
                    problem = "\"run_as\" must be a user name (a non-empty string).";
                    return false;
                case "commands" when member.Value.ValueKind == JsonValueKind.String:
                    commands = [member.Value.GetString()!];
                    break;
                case "commands" when SchedulingMembers.HasArgumentVector(member.Value):
                    if (!scheduling.TryReadCommands(member.Value, out var display, out problem))
                    {
                        return false;
                    }

                    commands = display;
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
                    if (scheduling.TryRead(member, out problem))
                    {
                        break;
                    }

                    problem = problem.Length > 0 ? problem
                        : $"Unknown member \"{member.Name}\"; a job object may have commands, queue, workdir, env, timeout, rerun_if_interrupted, limits, run_as, {SchedulingMembers.Names}.";
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
            Limits = limits,
            RunAs = runAs,
        };
        return scheduling.TryApply(ref request, out recurrence, out problem);
    }

    /// <summary>
    /// A job's <c>limits</c>: <c>{"memory_bytes": N, "max_processes": N, "cpu_weight": N}</c>, each optional, each a JSON number
    /// that is a whole number in its range (the ranges of <see cref="JobLimits"/>).
    /// </summary>
    private static bool TryReadLimits(JsonElement value, out JobLimits? limits, out string problem)
    {
        limits = null;
        problem = string.Empty;
        if (value.ValueKind != JsonValueKind.Object)
        {
            problem = $"\"limits\" must be an object with memory_bytes, max_processes and/or cpu_weight, not {Describe(value.ValueKind)}.";
            return false;
        }

        var read = new JobLimits();
        foreach (var member in value.EnumerateObject())
        {
            switch (member.Name)
            {
                case "memory_bytes" when member.Value.ValueKind == JsonValueKind.Number && member.Value.TryGetInt64(out var bytes) && bytes > 0:
                    read = read with { MemoryBytes = bytes };
                    break;
                case "max_processes" when member.Value.ValueKind == JsonValueKind.Number && member.Value.TryGetInt32(out var processes) && processes > 0:
                    read = read with { MaxProcesses = processes };
                    break;
                case "cpu_weight" when member.Value.ValueKind == JsonValueKind.Number && member.Value.TryGetInt32(out var weight) && weight is >= 1 and <= 10000:
                    read = read with { CpuWeight = weight };
                    break;
                case "memory_bytes":
                    problem = $"\"limits\": \"memory_bytes\" must be a positive whole number of bytes (a JSON number), not {Shown(member.Value)}.";
                    return false;
                case "max_processes":
                    problem = $"\"limits\": \"max_processes\" must be a whole number from 1 to {int.MaxValue} (a JSON number), not {Shown(member.Value)}.";
                    return false;
                case "cpu_weight":
                    problem = $"\"limits\": \"cpu_weight\" must be a whole number from 1 to 10000 (a JSON number; 100 is an ordinary share), not {Shown(member.Value)}.";
                    return false;
                default:
                    problem = $"\"limits\" has the unknown member \"{Short(member.Name)}\"; it may have memory_bytes, max_processes and cpu_weight.";
                    return false;
            }
        }

        limits = read.IsEmpty ? null : read;
        return true;

        static string Shown(JsonElement element) => element.ValueKind == JsonValueKind.Number ? Short(element.GetRawText()) : Describe(element.ValueKind);
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
