using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Dispatcher.Cli;
using Dispatcher.Client;
using Spectre.Console;

// dispatcher: a command-line client for Dispatcher hosts, built on Dispatcher.Client's public API only.
// Exit codes: 0 success (wait/follow: the job succeeded); 1 a job did not succeed, or an id was not found;
// 2 a usage, connection or server error.
var urlOption = new Option<string[]>("--url")
{
    Description = "A dispatcher host (http://, https://, ws:// or wss://); repeat it to address several. Default: $DISPATCHER_URL or http://127.0.0.1:12150.",
    Recursive = true,
    DefaultValueFactory = _ => [Environment.GetEnvironmentVariable("DISPATCHER_URL") is { Length: > 0 } u ? u : "http://127.0.0.1:12150"],
};
var userOption = new Option<string?>("--user")
{
    Description = "The user name (default $DISPATCHER_USER); the password comes from $DISPATCHER_PASSWORD or a prompt.",
    Recursive = true,
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("DISPATCHER_USER") is { Length: > 0 } u ? u : null,
};
var jsonOption = new Option<bool>("--json") { Description = "Write JSON for scripts instead of tables and text.", Recursive = true };

var root = new RootCommand("dispatcher: run, watch and control jobs on one Dispatcher host or a fleet of them.") { urlOption, userOption, jsonOption };

// add
var idOption = new Option<string?>("--id") { Description = "The job id (default: a new unique one)." };
var queueOption = new Option<string?>("--queue") { Description = "The queue (default: the server's no_queue)." };
var workdirOption = new Option<string?>("--workdir") { Description = "The working directory of the commands." };
var envOption = new Option<string[]>("--env") { Description = "An environment variable NAME=VALUE; repeat it for more." };
var timeoutOption = new Option<double?>("--timeout") { Description = "The job's time limit in seconds." };
var priorityOption = new Option<int?>("--priority") { Description = "Higher starts first in its queue (default 0)." };
var afterOption = new Option<string[]>("--after") { Description = "A job id that must succeed first (pending, running or retained); repeat it for more. If one does not succeed, this job is skipped." };
var delayOption = new Option<double?>("--delay") { Description = "Start no sooner than this many seconds from now." };
var atOption = new Option<string?>("--at") { Description = "Start no sooner than this time (ISO 8601, UTC unless it has an offset)." };
var retryOption = new Option<int?>("--retry") { Description = "Retry a failed attempt (non-zero exit, could not start, timed out) up to this many times." };
var retryDelayOption = new Option<double?>("--retry-delay") { Description = "Seconds before the first retry (with --retry)." };
var retryBackoffOption = new Option<double?>("--retry-backoff") { Description = "Each further retry waits this many times longer (with --retry)." };
var labelOption = new Option<string[]>("--label") { Description = "A label NAME=VALUE kept with the job; repeat it for more." };
var stdinOption = new Option<string?>("--stdin") { Description = "Text the commands read on standard input; '-' reads it from this tool's own standard input." };
var keyOption = new Option<string?>("--key") { Description = "An idempotency key: adding a job with the same key again creates nothing and prints the first job's id." };
var runAsOption = new Option<string?>("--run-as") { Description = "The user the job runs as (the server must allow it)." };
var memoryOption = new Option<string?>("--memory") { Description = "The job's memory limit in bytes, or with a K, M or G suffix (needs containment on the server)." };
var maxProcessesOption = new Option<int?>("--max-processes") { Description = "How many processes the job may have at once (needs containment on the server)." };
var cpuWeightOption = new Option<int?>("--cpu-weight") { Description = "The job's CPU weight, 1 to 10000; 100 is an ordinary share (needs containment on the server)." };
var commandsArgument = new Argument<string[]>("command") { Description = "A command string (no shell; use sh -c \"...\"); several run in order.", Arity = ArgumentArity.OneOrMore };
var add = new Command("add", "Start a job; prints its id (HOST:ID with several hosts, where it starts on every host).")
{
    idOption, queueOption, workdirOption, envOption, timeoutOption, priorityOption, afterOption, delayOption, atOption, retryOption,
    retryDelayOption, retryBackoffOption, labelOption, stdinOption, keyOption, runAsOption, memoryOption, maxProcessesOption,
    cpuWeightOption, commandsArgument,
};
add.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
{
    var env = JobOptions.Pairs("--env", p.GetValue(envOption));
    var labels = JobOptions.Pairs("--label", p.GetValue(labelOption));
    if (p.GetValue(retryOption) is null && (p.GetValue(retryDelayOption) is not null || p.GetValue(retryBackoffOption) is not null))
    {
        throw new UsageException("--retry-delay and --retry-backoff need --retry.");
    }

    var memory = p.GetValue(memoryOption) is { } m ? JobOptions.Bytes("--memory", m) : (long?)null;
    var maxProcesses = p.GetValue(maxProcessesOption);
    var cpuWeight = p.GetValue(cpuWeightOption);
    var stdin = p.GetValue(stdinOption) is "-" ? await Console.In.ReadToEndAsync(ct) : p.GetValue(stdinOption);

    var spec = new RemoteJobSpec
    {
        Id = p.GetValue(idOption) ?? $"job-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{RandomNumberGenerator.GetHexString(6).ToLowerInvariant()}",
        Commands = p.GetValue(commandsArgument)!,
        Queue = p.GetValue(queueOption),
        WorkingDirectory = p.GetValue(workdirOption),
        Environment = env.Count > 0 ? env : null,
        Timeout = p.GetValue(timeoutOption) is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
        Priority = p.GetValue(priorityOption),
        After = p.GetValue(afterOption) is { Length: > 0 } after ? after : null,
        Delay = p.GetValue(delayOption) is { } delay ? TimeSpan.FromSeconds(delay) : null,
        StartAt = p.GetValue(atOption) is { } at ? JobOptions.Time("--at", at) : null,
        Retry = p.GetValue(retryOption) is { } retry
            ? new RemoteRetryPolicy
            {
                Count = retry,
                Delay = p.GetValue(retryDelayOption) is { } retryDelay ? TimeSpan.FromSeconds(retryDelay) : null,
                Backoff = p.GetValue(retryBackoffOption),
            }
            : null,
        Labels = labels.Count > 0 ? labels : null,
        StandardInput = stdin,
        IdempotencyKey = p.GetValue(keyOption),
        RunAs = p.GetValue(runAsOption),
        Limits = memory is null && maxProcesses is null && cpuWeight is null
            ? null
            : new RemoteJobLimits { MemoryBytes = memory, MaxProcesses = maxProcesses, CpuWeight = cpuWeight },
    };
    var results = await Task.WhenAll(fleet.Hosts.Select(async h => (Host: h, Result: await h.Client.RunAsync(spec, ct))));
    var started = new JsonArray();
    var rejected = new JsonArray();
    foreach (var (host, result) in results)
    {
        foreach (var id in result.Started)
        {
            started.Add(new JsonObject { ["host"] = host.Label, ["id"] = id });
            if (!output.Json)
            {
                Console.Out.WriteLine(fleet.Name(host, id));
            }
        }

        foreach (var (id, reason) in result.Rejected)
        {
            rejected.Add(new JsonObject { ["host"] = host.Label, ["id"] = id, ["reason"] = reason });
            if (!output.Json)
            {
                Output.Error($"{fleet.Name(host, id)} rejected: {reason}");
            }
        }
    }

    if (output.Json)
    {
        Output.WriteJson(new JsonObject { ["started"] = started, ["rejected"] = rejected });
    }

    return rejected.Count == 0 ? 0 : 2;
}));

// status
var status = new Command("status", "List pending and running jobs (merged across hosts, with a host column).");
status.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
{
    var answers = await Task.WhenAll(fleet.Hosts.Select(async h =>
    {
        try
        {
            return (Host: h, Jobs: await h.Client.ListAsync(ct), Error: (DispatcherClientException?)null);
        }
        catch (DispatcherClientException ex)
        {
            return (Host: h, Jobs: (IReadOnlyList<RemoteJob>)[], Error: ex);
        }
    }));
    if (output.Json)
    {
        Output.WriteJson(new JsonObject
        {
            ["jobs"] = new JsonArray(answers.SelectMany(a => a.Jobs.Select(j => (JsonNode?)new JsonObject
            {
                ["host"] = a.Host.Label,
                ["id"] = j.Id,
                ["queue"] = j.Queue,
                ["state"] = j.State,
                ["position"] = j.QueuePosition,
                ["commands"] = new JsonArray(j.Commands.Select(c => (JsonNode?)c).ToArray()),
            })).ToArray()),
            ["errors"] = new JsonArray(answers.Where(a => a.Error is not null).Select(a => (JsonNode?)Output.ErrorJson(a.Host.Label, a.Error!)).ToArray()),
        });
    }
    else
    {
        var rows = answers.SelectMany(a => a.Jobs.Select(j => (IReadOnlyList<string>)[
            .. fleet.Several ? [a.Host.Label] : Array.Empty<string>(), j.Queue, j.Id, j.State, j.QueuePosition?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "", string.Join(" ; ", j.Commands)]));
        output.Table([.. fleet.Several ? ["host"] : Array.Empty<string>(), "queue", "job", "state", "position", "commands"], rows, Output.StateColour);
        foreach (var a in answers.Where(a => a.Error is not null))
        {
            Output.Error($"{a.Host.Label}: {Describe(a.Error!)}");
        }
    }

    return answers.Any(a => a.Error is not null) ? 2 : 0;
}));

// log
var logId = new Argument<string>("id") { Description = "The job id (HOST:ID with several hosts)." };
var log = new Command("log", "Print a finished job's output and exit codes.") { logId };
log.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
{
    var (host, id) = fleet.Resolve(p.GetValue(logId)!);
    var result = (await host.Client.HistoryAsync([id], ct)).LastOrDefault(r => r.Id == id);
    if (result is null)
    {
        var listed = (await host.Client.ListAsync(ct)).FirstOrDefault(j => j.Id == id);
        Output.Error(listed is null
            ? $"{fleet.Name(host, id)}: no such job (not pending, running, or in the history)."
            : $"{fleet.Name(host, id)} is {listed.State}; its log is available when it finishes (use 'dispatcher follow').");
        return 1;
    }

    if (output.Json)
    {
        Output.WriteJson(Output.ResultJson(host.Label, result));
    }
    else
    {
        foreach (var r in result.Results)
        {
            Console.Out.WriteLine($"$ {r.Command}");
            Console.Out.Write(r.Output);
            if (r.Output.Length > 0 && !r.Output.EndsWith('\n'))
            {
                Console.Out.WriteLine();
            }

            Console.Out.WriteLine($"[exit {r.ExitCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"}]");
        }

        Console.Out.WriteLine($"{fleet.Name(host, id)}: {result.Outcome}");
    }

    return 0;
}));

// follow
var followId = new Argument<string>("id") { Description = "The job id (HOST:ID with several hosts)." };
var follow = new Command("follow", "Stream a job's output until it ends; exit 0 when it succeeded.") { followId };
follow.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
{
    var (host, id) = fleet.Resolve(p.GetValue(followId)!);
    string? current = null;
    await foreach (var chunk in host.Client.FollowAsync(id, ct))
    {
        if (output.Json)
        {
            Output.WriteJson(new JsonObject { ["type"] = "output", ["host"] = host.Label, ["id"] = id, ["command"] = chunk.Command, ["text"] = chunk.Text });
            continue;
        }

        if (chunk.Command != current)
        {
            current = chunk.Command;
            if (output.Terminal)
            {
                AnsiConsole.MarkupLine($"[grey]$ {Markup.Escape(current)}[/]");
            }
        }

        Console.Out.Write(chunk.Text);
    }

    var result = await host.Client.WaitAsync(id, ct);
    if (output.Json)
    {
        var line = new JsonObject { ["type"] = "result" };
        foreach (var (k, v) in Output.ResultJson(host.Label, result).ToArray())
        {
            line[k] = v?.DeepClone();
        }

        Output.WriteJson(line);
    }
    else
    {
        Output.Error($"{fleet.Name(host, id)} {result.Outcome}");
    }

    return result.Succeeded ? 0 : 1;
}));

// wait
var waitIds = new Argument<string[]>("id") { Description = "Job ids (HOST:ID with several hosts).", Arity = ArgumentArity.OneOrMore };
var wait = new Command("wait", "Wait until jobs end; exit 0 when every one succeeded.") { waitIds };
wait.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
{
    var targets = p.GetValue(waitIds)!.Select(fleet.Resolve).ToArray();
    var results = new (Host Host, RemoteJobResult Result)[targets.Length];
    async Task WaitAll(Action<int>? done)
    {
        await Task.WhenAll(targets.Select(async (t, i) =>
        {
            results[i] = (t.Host, await t.Host.Client.WaitAsync(t.JobId, ct));
            done?.Invoke(i);
            if (!output.Json && !output.Terminal)
            {
                lock (results)
                {
                    Console.Out.WriteLine($"{fleet.Name(t.Host, t.JobId)}\t{results[i].Result.Outcome}");
                }
            }
        }));
    }

    if (!output.Json && output.Terminal)
    {
        await AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new SpinnerColumn(), new ElapsedTimeColumn())
            .StartAsync(async context =>
            {
                var tasks = targets.Select(t => context.AddTask(Markup.Escape(fleet.Name(t.Host, t.JobId))).IsIndeterminate()).ToArray();
                await WaitAll(i =>
                {
                    var outcome = results[i].Result.Outcome ?? "finished";
                    tasks[i].Description = $"{Markup.Escape(fleet.Name(targets[i].Host, targets[i].JobId))} [{Output.StateColour(outcome) ?? "default"}]{Markup.Escape(outcome)}[/]";
                    tasks[i].IsIndeterminate(false).Value(100);
                    tasks[i].StopTask();
                });
            });
    }
    else
    {
        await WaitAll(null);
    }

    if (output.Json)
    {
        Output.WriteJson(new JsonObject { ["jobs"] = new JsonArray(results.Select(r => (JsonNode?)Output.ResultJson(r.Host.Label, r.Result)).ToArray()) });
    }

    return results.All(r => r.Result.Succeeded) ? 0 : 1;
}));

// kill
var killIds = new Argument<string[]>("id") { Description = "Job ids (HOST:ID with several hosts).", Arity = ArgumentArity.OneOrMore };
var kill = new Command("kill", "Kill pending or running jobs with their whole process trees.") { killIds };
kill.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
{
    var targets = p.GetValue(killIds)!.Select(fleet.Resolve).ToArray();
    var killed = new JsonArray();
    var missed = new List<string>();
    foreach (var group in targets.GroupBy(t => t.Host))
    {
        var ids = group.Select(t => t.JobId).ToArray();
        var done = await group.Key.Client.KillAsync(ids, ct);
        foreach (var id in ids)
        {
            if (done.Contains(id))
            {
                killed.Add(new JsonObject { ["host"] = group.Key.Label, ["id"] = id });
                if (!output.Json)
                {
                    Console.Out.WriteLine(fleet.Name(group.Key, id));
                }
            }
            else
            {
                missed.Add(fleet.Name(group.Key, id));
            }
        }
    }

    if (output.Json)
    {
        Output.WriteJson(new JsonObject { ["killed"] = killed, ["not_found"] = new JsonArray(missed.Select(m => (JsonNode?)m).ToArray()) });
    }
    else if (missed.Count > 0)
    {
        Output.Error($"not pending or running: {string.Join(", ", missed)}");
    }

    return missed.Count == 0 ? 0 : 1;
}));

// history
var historyIds = new Argument<string[]>("id") { Description = "Only these job ids (HOST:ID with several hosts).", Arity = ArgumentArity.ZeroOrMore };
var history = new Command("history", "List finished jobs, oldest first.") { historyIds };
history.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
{
    var ids = p.GetValue(historyIds) ?? [];
    var targets = ids.Length == 0
        ? fleet.Hosts.Select(h => (Host: h, Ids: (string[]?)null))
        : ids.Select(fleet.Resolve).GroupBy(t => t.Host).Select(g => (Host: g.Key, Ids: (string[]?)g.Select(t => t.JobId).ToArray()));
    var answers = await Task.WhenAll(targets.Select(async t => (t.Host, Results: await t.Host.Client.HistoryAsync(t.Ids, ct))));
    if (output.Json)
    {
        Output.WriteJson(new JsonObject { ["history"] = new JsonArray(answers.SelectMany(a => a.Results.Select(r => (JsonNode?)Output.ResultJson(a.Host.Label, r))).ToArray()) });
    }
    else
    {
        var rows = answers.SelectMany(a => a.Results.Select(r => (IReadOnlyList<string>)[
            .. fleet.Several ? [a.Host.Label] : Array.Empty<string>(), r.Id, r.Queue ?? "", r.Outcome ?? r.State, Output.Time(r.StartedAt), Output.Time(r.FinishedAt), string.Join(" ; ", r.Commands)]));
        output.Table([.. fleet.Several ? ["host"] : Array.Empty<string>(), "job", "queue", "outcome", "started", "finished", "commands"], rows, Output.StateColour);
    }

    return 0;
}));

// pause / resume (servers that offer queue control; others answer 400 with a message saying so)
foreach (var (verb, help) in new[] { ("pause", "Pause a queue: its pending jobs wait (running ones go on)."), ("resume", "Resume a paused queue.") })
{
    var queueArgument = new Argument<string>("queue") { Description = "The queue." };
    var command = new Command(verb, help) { queueArgument };
    command.SetAction((p, ct) => Run(p, ct, async (fleet, output, ct) =>
    {
        var queue = p.GetValue(queueArgument)!;
        var answers = await Task.WhenAll(fleet.Hosts.Select(async h =>
            (Host: h, Queues: verb == "pause" ? await h.Client.PauseQueueAsync(queue, ct) : await h.Client.ResumeQueueAsync(queue, ct))));
        if (output.Json)
        {
            Output.WriteJson(new JsonObject { [verb == "pause" ? "paused" : "resumed"] = new JsonArray(answers.Select(a => (JsonNode?)new JsonObject
            {
                ["host"] = a.Host.Label,
                ["queues"] = new JsonArray(a.Queues.Select(q => (JsonNode?)q).ToArray()),
            }).ToArray()) });
        }
        else
        {
            foreach (var a in answers)
            {
                Console.Out.WriteLine($"{(fleet.Several ? a.Host.Label + ": " : "")}{verb}d {string.Join(", ", a.Queues)}");
            }
        }

        return 0;
    }));
    root.Add(command);
}

root.Add(add);
root.Add(status);
root.Add(log);
root.Add(follow);
root.Add(wait);
root.Add(kill);
root.Add(history);
return await root.Parse(args).InvokeAsync();

// Runs one command against the hosts given with --url, turning failures into a message and exit code 2.
async Task<int> Run(ParseResult p, CancellationToken ct, Func<Fleet, Output, CancellationToken, Task<int>> action)
{
    var output = new Output(p.GetValue(jsonOption));
    try
    {
        var user = p.GetValue(userOption);
        await using var fleet = Fleet.Create(p.GetValue(urlOption)!, user, user is null ? null : Password(user));
        return await action(fleet, output, ct);
    }
    catch (UsageException ex)
    {
        Output.Error(ex.Message);
        return 2;
    }
    catch (DispatcherClientException ex)
    {
        if (output.Json)
        {
            Output.WriteJson(new JsonObject { ["error"] = new JsonObject { ["code"] = ex.Code, ["message"] = ex.Message } });
        }

        Output.Error(Describe(ex));
        return 2;
    }
}

static string Password(string user)
{
    if (Environment.GetEnvironmentVariable("DISPATCHER_PASSWORD") is { Length: > 0 } password)
    {
        return password;
    }

    if (Console.IsInputRedirected)
    {
        throw new UsageException($"No password for user '{user}': set DISPATCHER_PASSWORD (standard input is not a terminal to ask on).");
    }

    return AnsiConsole.Prompt(new TextPrompt<string>($"Password for {Markup.Escape(user)}:").Secret());
}

static string Describe(DispatcherClientException ex) => ex.Code is null ? ex.Message : $"error {ex.Code}: {ex.Message}";
