using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Dispatcher.Protocol;

/// <summary>
/// The sysadm protocol, independent of the transport: parses and validates requests, checks access, maps <c>rpc/dispatcher</c>
/// actions onto <see cref="IDispatcher"/>, and builds replies and error envelopes. The WebSocket and HTTP transports only frame
/// and forward.
/// </summary>
internal sealed partial class ProtocolHandler
{
    public const string TooManyFailures = "Too Many Authorization Failures - Try again later";

    /// <summary>The longest request id accepted; a longer one gets a 400 that echoes only its start.</summary>
    public const int MaxIdLength = 256;

    /// <summary>How much of an oversized id, name or action an error message or log line repeats.</summary>
    private const int EchoLength = 64;

    private readonly IDispatcher _dispatcher;
    private readonly DispatcherProtocolOptions _options;
    private readonly TokenService _tokens;
    private readonly LoginThrottle _throttle;
    private readonly IDispatcherAuthenticator? _authenticator;
    private readonly IJobPolicy? _policy;
    private readonly AuditTrail? _audit;
    private readonly ILogger _logger;
    private readonly string _hostName;
    private readonly CancellationToken _stopping;
    private readonly Lazy<DispatcherEventLog?> _eventLog;

    public ProtocolHandler(IDispatcher dispatcher, IOptions<DispatcherProtocolOptions> options, TokenService tokens, LoginThrottle throttle,
        IServiceProvider services, ILogger<ProtocolHandler>? logger = null)
    {
        _dispatcher = dispatcher;
        _options = options.Value;
        _tokens = tokens;
        _throttle = throttle;
        _authenticator = services.GetService<IDispatcherAuthenticator>();
        _policy = services.GetService<IJobPolicy>();
        _audit = services.GetService<AuditTrail>();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _hostName = _options.HostName ?? Environment.MachineName;
        _stopping = services.GetService<IHostApplicationLifetime>()?.ApplicationStopping ?? CancellationToken.None;
        _eventLog = new Lazy<DispatcherEventLog?>(services.GetService<DispatcherEventLog>);
    }

    public TokenService Tokens => _tokens;

    public LoginThrottle Throttle => _throttle;

    /// <summary>Handles one whole request envelope.</summary>
    public async ValueTask<ProtocolReply> HandleMessageAsync(ProtocolSession session, ReadOnlyMemory<byte> utf8, CancellationToken cancellationToken)
    {
        if (!TryParse(utf8, out var document, out var invalid))
        {
            return Log(session, "?", "?", null, Error(null, 400, invalid));
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Log(session, "?", "?", null, Error(null, 400, $"A request must be a JSON object, not {Describe(root.ValueKind)}."));
            }

            string? id = null;
            if (root.TryGetProperty("id", out var idElement))
            {
                switch (idElement.ValueKind)
                {
                    case JsonValueKind.String:
                        id = idElement.GetString();
                        break;
                    case JsonValueKind.Number:
                        id = idElement.GetRawText();
                        break;
                    case JsonValueKind.Null:
                        break;
                    default:
                        return Log(session, "?", "?", null, Error(null, 400, $"\"id\" must be a string, not {Describe(idElement.ValueKind)}."));
                }
            }

            if (id is { Length: > MaxIdLength })
            {
                return Log(session, "?", "?", null, Error(Short(id), 400, $"\"id\" is {id.Length} characters long; at most {MaxIdLength} are accepted."));
            }

            if (!TryGetString(root, "namespace", out var ns, out var problem) || !TryGetString(root, "name", out var name, out problem))
            {
                return Log(session, "?", "?", null, Error(id, 400, problem));
            }

            var args = root.TryGetProperty("args", out var a) ? a : root;
            return await HandleAsync(session, ns, name, id, args, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Handles a REST request: namespace and name come from the URI, the body is the args object or a whole envelope whose
    /// <c>args</c> member is used.
    /// </summary>
    public async ValueTask<ProtocolReply> HandleBodyAsync(ProtocolSession session, string @namespace, string name, ReadOnlyMemory<byte> utf8,
        CancellationToken cancellationToken)
    {
        if (utf8.IsEmpty)
        {
            return Log(session, @namespace, name, null, Error(null, 400, "The request needs a JSON body, for example {\"action\": \"list\"}."));
        }

        if (!TryParse(utf8, out var document, out var problem))
        {
            return Log(session, @namespace, name, null, Error(null, 400, problem));
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Log(session, @namespace, name, null, Error(null, 400, $"The body must be a JSON object, not {Describe(root.ValueKind)}."));
            }

            var isEnvelope = root.TryGetProperty("args", out var args)
                && (root.TryGetProperty("namespace", out _) || root.TryGetProperty("name", out _) || root.TryGetProperty("id", out _));
            return await HandleAsync(session, @namespace, name, null, isEnvelope ? args : root, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Handles one request whose envelope is already taken apart (the HTTP transport gets namespace and name from the URI).</summary>
    public async ValueTask<ProtocolReply> HandleAsync(ProtocolSession session, string @namespace, string name, string? id, JsonElement args,
        CancellationToken cancellationToken)
    {
        var ns = @namespace.ToLowerInvariant();
        var n = name.ToLowerInvariant();
        ProtocolReply reply;
        try
        {
            reply = (ns, n) switch
            {
                ("rpc", "identify") => Ok(ns, name, id, new JsonObject { ["type"] = "server", ["hostname"] = _hostName }),
                ("rpc", "auth") => await AuthAsync(session, ns, name, id, args, cancellationToken).ConfigureAwait(false),
                ("rpc", "auth_token") => AuthToken(session, ns, name, id, args),
                ("rpc", "auth_clear") => AuthClear(session, ns, name, id),
                ("rpc", "query") => Require(session, id, DispatcherAccess.Read) ?? Ok(ns, name, id, new JsonObject
                {
                    ["rpc/dispatcher"] = Access(session) == DispatcherAccess.Full ? "read/write" : "read",
                }),
                ("rpc", "dispatcher") => await DispatcherAsync(session, ns, name, id, args, cancellationToken).ConfigureAwait(false),
                ("events", "subscribe" or "unsubscribe") when session.SupportsEvents => Events(session, ns, name, id, n == "subscribe", args),
                _ => Error(id, 404, $"Unknown namespace/name '{Short(@namespace)}/{Short(name)}'. This server offers rpc/dispatcher, rpc/identify, rpc/auth, rpc/auth_token, rpc/auth_clear, rpc/query{(session.SupportsEvents ? ", events/subscribe and events/unsubscribe" : string.Empty)}."),
            };
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            // Never leak exception details to the remote side; the log has them.
            ProtocolLog.Failed(_logger, ns, n, ex);
            reply = Error(id, 500, "The server failed to handle the request.");
        }

        return Log(session, ns, n, args, reply);
    }

    private ProtocolReply Log(ProtocolSession session, string ns, string name, JsonElement? args, ProtocolReply reply)
    {
        if (_logger.IsEnabled(LogLevel.Information))
        {
            var action = args is { ValueKind: JsonValueKind.Object } a && a.TryGetProperty("action", out var act) && act.ValueKind == JsonValueKind.String
                ? act.GetString()
                : null;
            var message = reply.Status == ProtocolReply.Ok ? "ok" : reply.Args?["message"]?.GetValue<string>() ?? string.Empty;
            ProtocolLog.Request(_logger, session.Transport, session.RemoteAddress, Short(session.User?.Name ?? "-"), Short(ns), Short(name), Short(action ?? "-"),
                reply.Status, message);
        }

        return reply;
    }

    private async ValueTask<ProtocolReply> AuthAsync(ProtocolSession session, string ns, string name, string? id, JsonElement args,
        CancellationToken cancellationToken)
    {
        if (_throttle.IsBlocked(session.RemoteAddress))
        {
            return Error(id, 401, TooManyFailures) with { CloseReason = TooManyFailures };
        }

        if (args.ValueKind != JsonValueKind.Object)
        {
            return Error(id, 400, "rpc/auth needs args {\"username\": \"...\", \"password\": \"...\"}.");
        }

        if (!TryGetString(args, "username", out var username, out var problem) || !TryGetString(args, "password", out var password, out problem))
        {
            return Error(id, 400, problem);
        }

        if (_throttle.IsBlocked(session.RemoteAddress, username))
        {
            // Even the right password waits out the window: guesses spread over many addresses must not lift the limit.
            EndSession(session);
            return Error(id, 401, TooManyFailures) with { CloseReason = TooManyFailures };
        }

        var user = await CheckPasswordAsync(username, password, cancellationToken).ConfigureAwait(false);
        if (user is null)
        {
            return Failed(session, id, username, _authenticator is null
                ? "Authentication by user name and password is not configured on this server."
                : "Invalid user name or password.");
        }

        return Authenticated(session, ns, name, id, user, _tokens.Issue(user));
    }

    public async ValueTask<DispatcherUser?> CheckPasswordAsync(string username, string password, CancellationToken cancellationToken)
    {
        if (_authenticator is null)
        {
            return null;
        }

        var user = await _authenticator.AuthenticateAsync(username, password, cancellationToken).ConfigureAwait(false);
        return user is { Access: not DispatcherAccess.None } ? user : null;
    }

    private ProtocolReply AuthToken(ProtocolSession session, string ns, string name, string? id, JsonElement args)
    {
        if (_throttle.IsBlocked(session.RemoteAddress))
        {
            return Error(id, 401, TooManyFailures) with { CloseReason = TooManyFailures };
        }

        if (args.ValueKind != JsonValueKind.Object || !TryGetString(args, "token", out var token, out var problem))
        {
            return Error(id, 400, "rpc/auth_token needs args {\"token\": \"...\"}.");
        }

        return _tokens.TryUse(token, out var user)
            ? Authenticated(session, ns, name, id, user, token)
            : Failed(session, id, null, "Invalid or expired token.");
    }

    private ProtocolReply Authenticated(ProtocolSession session, string ns, string name, string? id, DispatcherUser user, string token)
    {
        // A success erases no failure: one valid login between guesses would otherwise lift the limit.
        if (session.Token is not null && session.Token != token)
        {
            _tokens.Revoke(session.Token);
        }

        session.User = user;
        session.Token = token;
        return Ok(ns, name, id, new JsonArray(token, (int)_tokens.Lifetime.TotalSeconds));
    }

    private ProtocolReply Failed(ProtocolSession session, string? id, string? username, string message)
    {
        EndSession(session);
        return _throttle.Fail(session.RemoteAddress, username)
            ? Error(id, 401, TooManyFailures) with { CloseReason = TooManyFailures }
            : Error(id, 401, message);
    }

    /// <summary>A failed login ends whatever the session had: its user, its token and its event subscription.</summary>
    private static void EndSession(ProtocolSession session)
    {
        session.User = null;
        session.Token = null;
        session.EventsSubscribed = false;
    }

    /// <summary>
    /// Whether a subscribed session may still receive events: its token (when it has one) is neither expired nor revoked. Does
    /// not extend the token's life; called for every event, so it is a dictionary lookup.
    /// </summary>
    public bool MayReceiveEvents(ProtocolSession session) =>
        session.User is not null && (session.Token is not { } token || _tokens.IsValid(token));

    private ProtocolReply AuthClear(ProtocolSession session, string ns, string name, string? id)
    {
        _tokens.Revoke(session.Token);
        EndSession(session);
        return Ok(ns, name, id, new JsonObject { ["auth_clear"] = "success" });
    }

    /// <summary>What the session may do now: its token's user (while the token lives), else the host's principal mapping.</summary>
    public DispatcherAccess Access(ProtocolSession session)
    {
        if (session.User is { } user)
        {
            if (session.Token is null || _tokens.TryUse(session.Token, out _))
            {
                return user.Access;
            }

            session.User = null;
            session.Token = null;
        }

        if (_options.PrincipalAccess is { } map && session.Principal?.Identity?.IsAuthenticated == true)
        {
            var access = map(session.Principal);
            if (access != DispatcherAccess.None)
            {
                session.User = new DispatcherUser(session.Principal.Identity.Name ?? "(principal)", access);
                return access;
            }
        }

        return DispatcherAccess.None;
    }

    private ProtocolReply? Require(ProtocolSession session, string? id, DispatcherAccess needed, string? what = null)
    {
        var access = Access(session);
        if (access == DispatcherAccess.None)
        {
            return Error(id, 401, session.SupportsEvents
                ? "Not authenticated: send rpc/auth or rpc/auth_token first."
                : "Not authenticated: send an Authorization header, Basic with a user name and password, or Bearer with a token from rpc/auth.");
        }

        return access < needed ? Error(id, 403, $"Forbidden: {what ?? "this request"} needs full access; user '{session.User?.Name}' has read access.") : null;
    }

    private ProtocolReply Events(ProtocolSession session, string ns, string name, string? id, bool subscribe, JsonElement args)
    {
        if (Require(session, id, DispatcherAccess.Read) is { } denied)
        {
            return denied;
        }

        var resume = default(EventResume);
        if (args.ValueKind == JsonValueKind.Object)
        {
            // The resumable form {"channels": [...], "since": N, "stream": S} (see DispatcherEventLog); strings and arrays stay as they were.
            if (EventResume.Parse(args, out resume) is { } problem)
            {
                return Error(id, 400, $"events/{name}: {problem}");
            }
        }
        else if (TryGetStrings(args, out var plain))
        {
            resume = new EventResume(plain, null, null);
        }
        else
        {
            return Error(id, 400, $"events/{name} needs args that are an event name, an array of event names, or an object with \"channels\" (and \"since\"), not {Describe(args.ValueKind)}.");
        }

        if (resume.Channels.Any(n => string.Equals(n, "dispatcher", StringComparison.OrdinalIgnoreCase)))
        {
            session.EventsSubscribed = subscribe;
            session.EventsSince = subscribe ? resume.Since : null;
            session.EventsStream = subscribe ? resume.Stream : null;
        }

        // Unknown event names are ignored, as the sysadm server did; the reply echoes the request.
        var reply = new JsonObject { [subscribe ? "subscribe" : "unsubscribe"] = JsonNode.Parse(args.GetRawText()) };
        if (args.ValueKind == JsonValueKind.Object && subscribe && _eventLog.Value is { } log)
        {
            // The reply says where the stream stands; without "since" the subscription starts exactly there.
            var head = log.Head;
            reply["stream"] = log.Stream;
            reply["seq"] = head;
            if (session.EventsSubscribed && session.EventsSince is null)
            {
                session.EventsSince = head;
                session.EventsStream = log.Stream;
            }
        }

        return Ok(ns, name, id, reply);
    }

    private async ValueTask<ProtocolReply> DispatcherAsync(ProtocolSession session, string ns, string name, string? id, JsonElement args,
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

    private async ValueTask<ProtocolReply> KillAsync(ProtocolSession session, string ns, string name, string? id, JsonElement args, CancellationToken cancellationToken)
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

    private async ValueTask<ProtocolReply> RunAsync(ProtocolSession session, string ns, string name, string? id, JsonElement args, CancellationToken cancellationToken)
    {
        var started = new JsonArray();
        var result = new JsonObject { ["started"] = started };
        var rejected = new JsonObject();
        var any = false;

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

                    var (allowedItem, rejectionItem, rewrittenItem) = await ApplyPolicyAsync(session, generated, cancellationToken).ConfigureAwait(false);
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
            var (allowed, rejection, rewritten) = await ApplyPolicyAsync(session, recurrence?.Job ?? request, cancellationToken).ConfigureAwait(false);
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
                    _audit?.Run(session, allowed, null, rewritten);
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
                    _audit?.Run(session, submitted with { Id = info.Id }, null, rewritten);
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
    private async ValueTask<(JobRequest? Allowed, string? Rejection, bool Rewritten)> ApplyPolicyAsync(ProtocolSession session, JobRequest request,
        CancellationToken cancellationToken)
    {
        if (_policy is null || session.User is not { } user)
        {
            return (request, null, false);
        }

        var decision = await _policy.EvaluateAsync(new JobPolicyContext(request, user, session.Transport, session.RemoteAddress), cancellationToken)
            .ConfigureAwait(false);
        if (decision.Rejection is { } rejection)
        {
            _audit?.Run(session, request, rejection, rewritten: false);
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
        foreach (var member in value.EnumerateObject())
        {
            switch (member.Name)
            {
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
                        : $"Unknown member \"{member.Name}\"; a job object may have commands, queue, workdir, env, timeout, rerun_if_interrupted, {SchedulingMembers.Names}.";
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
        return scheduling.TryApply(ref request, out recurrence, out problem);
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

    /// <summary>Finds a member by name, ignoring case as the sysadm server did for its keys.</summary>
    private static bool TryGetProperty(JsonElement obj, string name, out JsonElement value)
    {
        if (obj.TryGetProperty(name, out value))
        {
            return true;
        }

        foreach (var p in obj.EnumerateObject())
        {
            if (string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                value = p.Value;
                return true;
            }
        }

        return false;
    }

    private static bool TryGetString(JsonElement obj, string name, out string value, out string problem)
    {
        value = string.Empty;
        if (!TryGetProperty(obj, name, out var element))
        {
            problem = $"Missing \"{name}\".";
            return false;
        }

        if (element.ValueKind != JsonValueKind.String)
        {
            problem = $"\"{name}\" must be a string, not {Describe(element.ValueKind)}.";
            return false;
        }

        value = element.GetString()!;
        problem = string.Empty;
        return true;
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    private static ProtocolReply Ok(string ns, string name, string? id, JsonNode? args) =>
        new(WireFormat.Envelope(ns, id is null ? name : "response", id, args), ProtocolReply.Ok);

    /// <summary>Parses a request with the depth limit, and refuses strings that cannot be read or passed on (see <see cref="FindBadString"/>).</summary>
    private bool TryParse(ReadOnlyMemory<byte> utf8, out JsonDocument document, out string problem)
    {
        try
        {
            document = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = _options.MaxJsonDepth });
        }
        catch (JsonException ex)
        {
            document = null!;
            problem = $"Invalid JSON: {ex.Message}";
            return false;
        }

        if (FindBadString(document.RootElement) is { } bad)
        {
            document.Dispose();
            document = null!;
            problem = bad.Describe();
            return false;
        }

        problem = string.Empty;
        return true;
    }

    /// <summary>A string or an array of strings (job ids, event names).</summary>
    private static bool TryGetStrings(JsonElement value, out string[] strings)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            strings = [value.GetString()!];
            return true;
        }

        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
        {
            strings = [.. value.EnumerateArray().Select(e => e.GetString()!)];
            return true;
        }

        strings = [];
        return false;
    }

    /// <summary>
    /// Checks every string and member name once, right after parsing, so that bad text reaches no reader below:
    /// System.Text.Json parses an unpaired surrogate escape (<c>"\ud800"</c>) but throws when it is read as a string; and NUL
    /// cannot pass to the operating system, which would cut a command, an environment entry or a path short at it, silently
    /// (<c>echo a\u0000b</c> ran <c>echo a</c>). The path to a bad string is built only when one is found.
    /// </summary>
    private static BadString? FindBadString(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                string text;
                try
                {
                    text = element.GetString()!;
                }
                catch (InvalidOperationException)
                {
                    return new BadString(Nul: false);
                }

                return text.Contains('\0', StringComparison.Ordinal) ? new BadString(Nul: true) : null;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    if (FindBadString(item) is { } bad)
                    {
                        bad.Path.Add($"[{index}]");
                        return bad;
                    }

                    index++;
                }

                return null;
            case JsonValueKind.Object:
                foreach (var member in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = member.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return new BadString(Nul: false);
                    }

                    if (name.Contains('\0', StringComparison.Ordinal))
                    {
                        var bad = new BadString(Nul: true) { IsName = true };
                        bad.Path.Add("." + Short(name));
                        return bad;
                    }

                    if (FindBadString(member.Value) is { } inner)
                    {
                        inner.Path.Add("." + Short(name));
                        return inner;
                    }
                }

                return null;
            default:
                return null;
        }
    }

    /// <summary>A string that cannot be taken: where (collected from the inside out) and why.</summary>
    private sealed record BadString(bool Nul)
    {
        public List<string> Path { get; } = [];

        public bool IsName { get; init; }

        public string Describe()
        {
            if (!Nul)
            {
                return "The request holds a string that is not valid UTF-16 (an unpaired surrogate escape such as \\ud800).";
            }

            var path = string.Concat(Enumerable.Reverse(Path)).TrimStart('.');
            return IsName
                ? $"The member name \"{path}\" holds a NUL character (U+0000), which the operating system would cut the text at."
                : $"\"{path}\" holds a NUL character (U+0000), which the operating system would cut the text at.";
        }
    }

    /// <summary>At most the first <see cref="EchoLength"/> characters, NUL shown as \0: what an error or a log line may repeat of client text.</summary>
    internal static string Short(string text) =>
        (text.Length <= EchoLength ? text : string.Concat(text.AsSpan(0, EchoLength), "…")).Replace("\0", "\\0", StringComparison.Ordinal);

    public static ProtocolReply Error(string? id, int code, string message) =>
        new(WireFormat.Envelope("error", "error", id, WireFormat.ErrorArgs(code, message)), code);
}

internal static partial class ProtocolLog
{
    [LoggerMessage(EventId = 201, EventName = "Request", Level = LogLevel.Information, Message = "{Transport} {Address} user={User} {Namespace}/{Name} action={Action} -> {Status} {Detail}")]
    public static partial void Request(ILogger logger, string transport, string address, string user, string @namespace, string name, string action, int status, string detail);

    [LoggerMessage(EventId = 202, EventName = "RequestFailed", Level = LogLevel.Error, Message = "Handling {Namespace}/{Name} failed")]
    public static partial void Failed(ILogger logger, string @namespace, string name, Exception exception);
}
