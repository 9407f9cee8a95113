using Microsoft.Extensions.DependencyInjection;
using System.Text.Json.Nodes;

namespace Dispatcher.Transports.Tests;

/// <summary>
/// Queue control and scheduling end to end: a real Kestrel, real clients and real processes. The same suite runs over WebSocket
/// and over REST (subclasses below); order files prove priority and dependency order, a marker file proves a skipped job never ran.
/// </summary>
public abstract class SchedulingProtocolTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("sched-e2e-").FullName;

    private protected TestServer Server { get; private set; } = null!;

    public virtual async Task InitializeAsync() =>
        Server = await TestServer.StartAsync(host: b => b.Services.Configure<DispatcherOptions>(o => o.DataDirectory = Path.Combine(_directory, "data")));

    public virtual async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>Sends <c>rpc/dispatcher</c> with these args as <paramref name="user"/>; returns the whole reply envelope.</summary>
    protected abstract Task<JsonNode> CallAsync(JsonObject args, string user = "admin");

    private string PathOf(string name) => Path.Combine(_directory, name);

    private Task<JobResult> WaitAsync(string id) => Server.Dispatcher.WaitForCompletionAsync(id).WaitAsync(TestServer.Patience);

    private static JsonNode Args(JsonNode reply)
    {
        Assert.Null(reply["args"]!["code"]);
        return reply["args"]!;
    }

    private static void IsError(JsonNode reply, int code) =>
        Assert.Equal(code.ToString(System.Globalization.CultureInfo.InvariantCulture), (string?)reply["args"]!["code"]);

    [Fact]
    public async Task Pause_Priorities_Resume_RunInPriorityOrder()
    {
        var order = PathOf("order");
        JsonAssert.Equal(JsonNode.Parse("""{"paused":["pkg_queue"]}"""), Args(await CallAsync(new JsonObject { ["action"] = "pause", ["queue"] = "pkg_queue" })));
        var run = new JsonObject { ["action"] = "run" };
        foreach (var (id, priority) in new[] { ("low", -5), ("first-plain", 0), ("urgent", 9), ("second-plain", 0) })
        {
            run[id] = new JsonObject { ["commands"] = $"sh -c \"echo {id} >> {order}\"", ["queue"] = "pkg_queue", ["priority"] = priority };
        }

        Assert.Equal(4, Args(await CallAsync(run))["started"]!.AsArray().Count);
        var queues = Args(await CallAsync(new JsonObject { ["action"] = "queues" }))["queues"]!;
        JsonAssert.Equal(JsonNode.Parse("""{"limit":1,"paused":true,"draining":false,"drained":false,"running":0,"pending":4}"""), queues["pkg_queue"]);
        var listed = Args(await CallAsync(new JsonObject { ["action"] = "list" }))["jobs"]!["pkg_queue"]!;
        Assert.Equal(9, (int)listed["urgent"]!["priority"]!);
        Assert.Equal("0", (string?)listed["urgent"]!["queue_position"]);

        JsonAssert.Equal(JsonNode.Parse("""{"resumed":["pkg_queue"]}"""), Args(await CallAsync(new JsonObject { ["action"] = "resume", ["queue"] = new JsonArray("pkg_queue") })));
        await WaitAsync("low");

        Assert.Equal(["urgent", "first-plain", "second-plain", "low"], File.ReadAllLines(order));
    }

    [Fact]
    public async Task After_RunsInDependencyOrder_AndASkippedJobNeverRuns()
    {
        var order = PathOf("order");
        var marker = PathOf("never");
        var reply = Args(await CallAsync(JsonNode.Parse($$$"""
            {"action":"run",
             "build":{"commands":"sh -c \"sleep 0.3; echo build >> {{{order}}}\""},
             "test":{"commands":"sh -c \"echo test >> {{{order}}}\"","after":"build"},
             "deploy":{"commands":"sh -c \"echo deploy >> {{{order}}}\"","after":["build","test"],"labels":{"stage":"prod"}},
             "broken":{"commands":"sh -c \"sleep 0.1; exit 2\""},
             "never":{"commands":"touch {{{marker}}}","after":["broken"]}}
            """)!.AsObject()));

        Assert.Equal(5, reply["started"]!.AsArray().Count);
        Assert.Equal(JobOutcome.Succeeded, (await WaitAsync("deploy")).Outcome);
        Assert.Equal(JobOutcome.Skipped, (await WaitAsync("never")).Outcome);
        Assert.Equal(["build", "test", "deploy"], File.ReadAllLines(order));
        Assert.False(File.Exists(marker));

        var history = Args(await CallAsync(new JsonObject { ["action"] = "history", ["job_id"] = new JsonArray("never", "deploy") }))["history"]!.AsArray();
        var never = history.Single(h => (string?)h!["process_id"] == "never")!;
        Assert.Equal("skipped", (string?)never["outcome"]);
        Assert.Null(never["time_started"]);
        Assert.Equal("prod", (string?)history.Single(h => (string?)h!["process_id"] == "deploy")!["labels"]!["stage"]);

        var unknown = Args(await CallAsync(JsonNode.Parse("""{"action":"run","orphan":{"commands":"true","after":"ghost"}}""")!.AsObject()));
        Assert.Contains("ghost", (string?)unknown["rejected"]!["orphan"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Drain_RefusesNewJobs_ThenReportsDrained_ResumeReopens()
    {
        var gate = PathOf("gate");
        await CallAsync(JsonNode.Parse($$$"""{"action":"run","held":{"commands":"sh -c \"while [ ! -e {{{gate}}} ]; do sleep 0.01; done\"","queue":"pkg_queue"}}""")!.AsObject());

        JsonAssert.Equal(JsonNode.Parse("""{"draining":["pkg_queue"]}"""), Args(await CallAsync(new JsonObject { ["action"] = "drain", ["queue"] = "pkg_queue" })));
        var refused = Args(await CallAsync(JsonNode.Parse("""{"action":"run","late":{"commands":"true","queue":"pkg_queue"}}""")!.AsObject()));
        Assert.Contains("draining", (string?)refused["rejected"]!["late"], StringComparison.Ordinal);
        File.WriteAllText(gate, string.Empty);
        await WaitAsync("held");

        var queue = Args(await CallAsync(new JsonObject { ["action"] = "queues" }))["queues"]!["pkg_queue"]!;
        Assert.True((bool)queue["draining"]! && (bool)queue["drained"]!);
        await CallAsync(new JsonObject { ["action"] = "resume", ["queue"] = "pkg_queue" });
        Assert.Equal(["late"], Args(await CallAsync(JsonNode.Parse("""{"action":"run","late":{"commands":"true","queue":"pkg_queue"}}""")!.AsObject()))["started"]!.AsArray().Select(n => (string?)n));
    }

    [Fact]
    public async Task AddQueue_SetLimit_AndErrors()
    {
        var added = Args(await CallAsync(JsonNode.Parse("""{"action":"add_queue","queue":"builds","limit":2}""")!.AsObject()));
        JsonAssert.Equal(JsonNode.Parse("""{"queues":{"builds":{"limit":2,"paused":false,"draining":false,"drained":false,"running":0,"pending":0}}}"""), added);
        var changed = Args(await CallAsync(JsonNode.Parse("""{"action":"set_limit","queue":"builds","limit":0}""")!.AsObject()));
        Assert.Equal(0, (int)changed["queues"]!["builds"]!["limit"]!);
        Assert.Equal(["no_queue", "pkg_queue", "iocage_queue", "builds"], Args(await CallAsync(new JsonObject { ["action"] = "queues" }))["queues"]!.AsObject().Select(p => p.Key));
        Assert.Equal(JobOutcome.Succeeded, await RunAndWait("""{"action":"run","b1":{"commands":"true","queue":"builds"}}""", "b1"));

        IsError(await CallAsync(JsonNode.Parse("""{"action":"add_queue","queue":"builds","limit":1}""")!.AsObject()), 400);
        IsError(await CallAsync(JsonNode.Parse("""{"action":"set_limit","queue":"builds","limit":-1}""")!.AsObject()), 400);
        IsError(await CallAsync(JsonNode.Parse("""{"action":"pause","queue":["pkg_queue","nowhere"]}""")!.AsObject()), 400);
        IsError(await CallAsync(JsonNode.Parse("""{"action":"pause"}""")!.AsObject()), 400);
        Assert.False(Server.Dispatcher.GetQueues().Single(q => q.Name == "pkg_queue").Paused);
        IsError(await CallAsync(JsonNode.Parse("""{"action":"pause","queue":"pkg_queue"}""")!.AsObject(), user: "reader"), 403);
        Assert.NotNull(Args(await CallAsync(new JsonObject { ["action"] = "queues" }, user: "reader"))["queues"]);
    }

    [Fact]
    public async Task DelayAndStartAt_Retry_AndBadMembers()
    {
        var counter = PathOf("n");
        var reply = Args(await CallAsync(JsonNode.Parse($$$"""
            {"action":"run",
             "later":{"commands":"true","delay":3600},
             "past":{"commands":"true","start_at":"2001-01-01T00:00:00Z"},
             "flaky":{"commands":"sh -c \"echo x >> {{{counter}}}; [ $(wc -l < {{{counter}}}) -ge 3 ]\"","retry":{"count":3,"delay":0.05,"backoff":2}},
             "bad1":{"commands":"true","delay":-1},
             "bad2":{"commands":"true","delay":1,"start_at":"2030-01-01T00:00:00Z"},
             "bad3":{"commands":"true","retry":{"count":"x"}},
             "bad4":{"commands":"true","priority":1.5},
             "bad5":{"commands":"true","start_at":"tomorrow"},
             "bad6":{"commands":"true","time_zone":"UTC"}}
            """)!.AsObject()));

        Assert.Equal(["later", "past", "flaky"], reply["started"]!.AsArray().Select(n => (string?)n));
        Assert.Equal(6, reply["rejected"]!.AsObject().Count);
        Assert.Equal(JobOutcome.Succeeded, (await WaitAsync("past")).Outcome);
        var later = Args(await CallAsync(new JsonObject { ["action"] = "list" }))["jobs"]!["no_queue"]!["later"]!;
        Assert.Equal("pending", (string?)later["state"]);
        Assert.NotNull((string?)later["not_before"]);

        var flaky = await WaitAsync("flaky");
        Assert.Equal((JobOutcome.Succeeded, 3), (flaky.Outcome, flaky.Attempt));
        var history = Args(await CallAsync(new JsonObject { ["action"] = "history", ["job_id"] = "flaky" }))["history"]![0]!;
        Assert.Equal(3, (int)history["attempt"]!);
        Assert.Equal(["failed", "failed"], history["previous_attempts"]!.AsArray().Select(a => (string?)a!["outcome"]));
        await CallAsync(new JsonObject { ["action"] = "kill", ["job_id"] = "later" });
    }

    [Fact]
    public async Task Cron_MakesARecurrence_ThatRunsListsAndIsRemoved()
    {
        var runs = PathOf("runs");
        var reply = Args(await CallAsync(JsonNode.Parse($$$"""{"action":"run","tick":{"commands":"sh -c \"echo tick >> {{{runs}}}\"","cron":"* * * * * *","time_zone":"Europe/Berlin"}}""")!.AsObject()));
        Assert.Equal(["tick"], reply["recurring"]!.AsArray().Select(n => (string?)n));

        var listed = Args(await CallAsync(new JsonObject { ["action"] = "recurrences" }))["recurrences"]!["tick"]!;
        Assert.Equal("* * * * * *", (string?)listed["cron"]);
        Assert.Equal("Europe/Berlin", (string?)listed["time_zone"]);
        await ProcessProbeWait(() => Server.Dispatcher.ListFinished().Any(r => r.Id.StartsWith("tick@", StringComparison.Ordinal) && r.Outcome == JobOutcome.Succeeded));
        JsonAssert.Equal(JsonNode.Parse("""{"removed":["tick"]}"""), Args(await CallAsync(JsonNode.Parse("""{"action":"remove_recurrence","recurrence":"tick"}""")!.AsObject())));
        JsonAssert.Equal(JsonNode.Parse("""{"recurrences":{}}"""), Args(await CallAsync(new JsonObject { ["action"] = "recurrences" })));
        Assert.True(File.Exists(runs));

        var bad = Args(await CallAsync(JsonNode.Parse("""{"action":"run","x":{"commands":"true","cron":"not cron"},"y":{"commands":"true","cron":"* * * * *","time_zone":"Mars/Olympus"}}""")!.AsObject()));
        Assert.Contains("cron", (string?)bad["rejected"]!["x"], StringComparison.Ordinal);
        Assert.Contains("time zone", (string?)bad["rejected"]!["y"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Log_ReadsAThreeMegabyteOutputWhole_InChunks_AndWhileRunning()
    {
        // seq 1 450000 prints 3 038 895 bytes (over 3 MB).
        var gate = PathOf("gate");
        var expected = string.Concat(Enumerable.Range(1, 450_000).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n")) + "é€😀 done\n";
        var run = new JsonObject
        {
            ["action"] = "run",
            ["big"] = new JsonObject
            {
                ["commands"] = new JsonArray("seq 1 450000", $"sh -c \"while [ ! -e {gate} ]; do sleep 0.01; done; printf 'é€😀 done\\n'\""),
            },
        };
        await CallAsync(run);

        // While it runs: the first command's output is there, and the job is not finished.
        var text = new System.Text.StringBuilder();
        long offset = 0;
        await ProcessProbeWait(() => Server.Dispatcher.List().Any(j => j.Id == "big" && j.CurrentCommand == 1));
        var running = Args(await CallAsync(new JsonObject { ["action"] = "log", ["job_id"] = "big", ["offset"] = 0, ["limit"] = 10 }));
        Assert.Equal("1\n2\n3\n4\n5\n", (string?)running["output"]);
        Assert.False((bool)running["finished"]!);
        File.WriteAllText(gate, string.Empty);
        await WaitAsync("big");

        while (true)
        {
            var chunk = Args(await CallAsync(new JsonObject { ["action"] = "log", ["job_id"] = "big", ["offset"] = offset, ["limit"] = 1024 * 1024 }));
            Assert.Equal(offset, (long)chunk["offset"]!);
            text.Append((string?)chunk["output"]);
            offset = (long)chunk["next_offset"]!;
            if ((bool)chunk["finished"]! && offset == (long)chunk["end_offset"]!)
            {
                break;
            }
        }

        Assert.True(offset > 3_000_000, $"read {offset} bytes");
        Assert.Equal(expected, text.ToString());
        IsError(await CallAsync(new JsonObject { ["action"] = "log", ["job_id"] = "nope" }), 404);
        IsError(await CallAsync(new JsonObject { ["action"] = "log", ["job_id"] = "big", ["limit"] = 0 }), 400);
    }

    [Fact]
    public async Task ArgumentVectors_AndStandardInput_ReachTheProcessUnchanged()
    {
        var copy = PathOf("stdin copy");
        var run = new JsonObject
        {
            ["action"] = "run",
            ["argv"] = new JsonObject
            {
                // No splitting, no quoting: the space, the quote and the %s reach printf as they are; a plain string still splits.
                ["commands"] = new JsonArray(new JsonArray("printf", "[%s]", "a b", "c\"d", "  "), "echo plain", new JsonArray("sh", "-c", "cat > \"$0\"", copy)),
                ["stdin"] = "line one\nline two ü\n",
            },
        };

        Assert.Equal(["argv"], Args(await CallAsync(run))["started"]!.AsArray().Select(n => (string?)n));
        var result = await WaitAsync("argv");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal("[a b][c\"d][  ]", result.CommandResults[0].Output);
        Assert.Equal("plain\n", result.CommandResults[1].Output);
        Assert.Equal("line one\nline two ü\n", File.ReadAllText(copy));
        Assert.Equal("printf [%s] \"a b\" \"c\"\"\"d\" \"  \"", result.Commands[0]);
        var bad = Args(await CallAsync(JsonNode.Parse("""{"action":"run","x":{"commands":[[]]},"y":{"commands":["true"],"stdin":5}}""")!.AsObject()));
        Assert.Equal(2, bad["rejected"]!.AsObject().Count);
    }

    [Fact]
    public async Task GeneratedIds_IdempotencyKeys_AndLabels()
    {
        var counter = PathOf("runs");
        var job = $$$"""{"commands":"sh -c \"echo x >> {{{counter}}}\"","idempotency_key":"deploy-42","labels":{"team":"web"}}""";
        var first = Args(await CallAsync(JsonNode.Parse($$$"""{"action":"run","jobs":[{{{job}}},{"commands":"true"}]}""")!.AsObject()));
        var ids = first["started"]!.AsArray().Select(n => (string)n!).ToArray();
        Assert.Equal(2, ids.Length);
        Assert.All(ids, i => Assert.Matches("^[0-9a-f]{32}$", i));
        Assert.NotEqual(ids[0], ids[1]);
        var result = await WaitAsync(ids[0]);
        Assert.Equal("web", result.Labels!["team"]);

        // The same key again, named or not: no new job, the reply names the first one.
        var again = Args(await CallAsync(JsonNode.Parse($$$"""{"action":"run","jobs":[{{{job}}}],"named":{{{job}}}}""")!.AsObject()));
        Assert.Equal([ids[0], ids[0]], again["started"]!.AsArray().Select(n => (string?)n));
        Assert.Single(File.ReadAllLines(counter));
        Assert.DoesNotContain(Server.Dispatcher.ListFinished(), r => r.Id == "named");
        var bad = Args(await CallAsync(JsonNode.Parse("""{"action":"run","jobs":[{"commands":"true","idempotency_key":""}]}""")!.AsObject()));
        Assert.NotNull(bad["rejected"]!["jobs[0]"]);
    }

    [Fact]
    public async Task History_FiltersByQueueOutcomeLabelAndTime()
    {
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);
        await CallAsync(JsonNode.Parse("""
            {"action":"run",
             "ok-pkg":{"commands":"true","queue":"pkg_queue","labels":{"team":"a","env":"prod"}},
             "bad-pkg":{"commands":"sh -c \"exit 1\"","queue":"pkg_queue","labels":{"team":"a"}},
             "ok-free":{"commands":"true","labels":{"team":"b"}}}
            """)!.AsObject());
        foreach (var id in new[] { "ok-pkg", "bad-pkg", "ok-free" })
        {
            await WaitAsync(id);
        }

        async Task<string[]> Ids(string filter) =>
            [.. Args(await CallAsync(JsonNode.Parse(filter)!.AsObject()))["history"]!.AsArray().Select(h => (string)h!["process_id"]!).Order()];

        Assert.Equal(["bad-pkg", "ok-pkg"], await Ids("""{"action":"history","queue":"pkg_queue"}"""));
        Assert.Equal(["ok-free", "ok-pkg"], await Ids("""{"action":"history","outcome":"succeeded"}"""));
        Assert.Equal(["ok-pkg"], await Ids("""{"action":"history","labels":{"team":"a","env":"prod"},"outcome":["succeeded","failed"]}"""));
        Assert.Equal(["bad-pkg", "ok-free", "ok-pkg"], await Ids($$$"""{"action":"history","since":"{{{before:O}}}"}"""));
        Assert.Empty(await Ids($$$"""{"action":"history","until":"{{{before:O}}}"}"""));
        IsError(await CallAsync(JsonNode.Parse("""{"action":"history","outcome":"great"}""")!.AsObject()), 400);
        IsError(await CallAsync(JsonNode.Parse("""{"action":"history","since":"yesterday"}""")!.AsObject()), 400);
    }

    private async Task<JobOutcome> RunAndWait(string run, string id)
    {
        await CallAsync(JsonNode.Parse(run)!.AsObject());
        return (await WaitAsync(id)).Outcome;
    }

    private static async Task ProcessProbeWait(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TestServer.Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "Timed out waiting for the condition.");
            await Task.Delay(20);
        }
    }
}

public sealed class WebSocketSchedulingTests : SchedulingProtocolTests
{
    private readonly Dictionary<string, WsClient> _clients = [];

    public override async Task DisposeAsync()
    {
        foreach (var client in _clients.Values)
        {
            await client.DisposeAsync();
        }

        await base.DisposeAsync();
    }

    protected override async Task<JsonNode> CallAsync(JsonObject args, string user = "admin")
    {
        if (!_clients.TryGetValue(user, out var client))
        {
            _clients[user] = client = await Server.ConnectAsync(user);
        }

        return await client.DispatcherAsync(args);
    }
}

public sealed class HttpSchedulingTests : SchedulingProtocolTests
{
    protected override async Task<JsonNode> CallAsync(JsonObject args, string user = "admin") =>
        (await Server.PutAsync("/rpc/dispatcher", args.ToJsonString(), user)).Body!;
}
