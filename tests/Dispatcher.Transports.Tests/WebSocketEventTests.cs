using System.Globalization;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;

namespace Dispatcher.Transports.Tests;

public sealed class WebSocketEventTests
{
    [Fact]
    public async Task RealJob_SendsPendingRunningFinished_AndDeltasMakeTheFinalOutput()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        JsonAssert.Equal(
            JsonNode.Parse("""{"args":{"subscribe":"dispatcher"},"id":"req-2","name":"response","namespace":"events"}"""),
            await client.RequestAsync("events", "subscribe", new JsonArray("dispatcher")));
        const string command = "sh -c \"for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done\"";

        // The job's events may come before the reply to run (the reply is not awaited here, so none is skipped).
        await client.SendTextAsync(new JsonObject
        {
            ["namespace"] = "rpc",
            ["name"] = "dispatcher",
            ["id"] = "run-ev",
            ["args"] = new JsonObject { ["action"] = "run", ["ev"] = new JsonArray(command, "echo done") },
        }.ToJsonString());

        var events = new List<JsonNode>();
        while (true)
        {
            var frame = await client.ReceiveAsync(f => (string?)f["namespace"] == "events" && (string?)f["name"] == "dispatcher");
            Assert.Equal("", (string?)frame["id"]);
            events.Add(frame["args"]!);
            if ((string?)frame["args"]!["state"] == "finished")
            {
                break;
            }
        }

        JsonAssert.Equal(JsonNode.Parse("""{"state":"pending","process_id":"ev"}"""), events[0]);
        var running = events.Skip(1).SkipLast(1).ToList();
        Assert.True(running.Count >= 2, $"expected a start event and output updates, got {running.Count}");
        Assert.All(running, r => Assert.Equal("running", (string?)r["state"]));
        var firstDetails = running[0]["process_details"]!;
        Assert.Equal("ev", (string?)firstDetails["process_id"]);
        JsonAssert.Equal(new JsonArray(command, "echo done"), firstDetails["cmd_list"]);
        Assert.NotNull((string?)firstDetails["time_started"]);
        var deltas = string.Concat(running.Select(r => (string?)r["process_details"]![command] ?? string.Empty));
        var finished = events[^1]["process_details"]!;
        Assert.Equal("line 1\nline 2\nline 3\nline 4\nline 5\n", deltas);
        Assert.Equal(deltas, (string?)finished[command]);
        Assert.Equal("done\n", (string?)finished["echo done"]);
        Assert.Equal("0", (string?)finished["return_codes/" + command]);
        Assert.Equal("0", (string?)finished["return_codes/echo done"]);
        Assert.Equal("finished", (string?)finished["state"]);
        Assert.True(DateTimeOffset.Parse((string)finished["time_finished"]!, System.Globalization.CultureInfo.InvariantCulture)
            >= DateTimeOffset.Parse((string)finished["time_started"]!, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task SubscriberJoiningWhileAJobRuns_GetsItsUpdatesUnderTheCommandKeys()
    {
        await using var server = await TestServer.StartAsync();
        var directory = Directory.CreateTempSubdirectory("dispatcher-midjob-");
        try
        {
            var go = Path.Combine(directory.FullName, "go");
            var command = $"sh -c \"echo early; while [ ! -e '{go}' ]; do sleep 0.02; done; echo late\"";
            using (var watch = server.Dispatcher.Subscribe())
            {
                await server.Dispatcher.EnqueueAsync(new JobRequest("midjob", [command, "echo second"]));
                await foreach (var e in watch.ReadAllAsync().WithCancellation(new CancellationTokenSource(TestServer.Patience).Token))
                {
                    if (e is Events.JobOutputEvent { JobId: "midjob" })
                    {
                        break;
                    }
                }
            }

            // The event feed has no listener until now, so it meets the job in the middle of its first command.
            await using var client = await server.ConnectAsync("admin");
            await client.RequestAsync("events", "subscribe", "dispatcher");
            await File.WriteAllTextAsync(go, string.Empty);

            var running = await client.ReceiveAsync(f => (string?)f["args"]?["state"] == "running");
            var details = running["args"]!["process_details"]!;
            Assert.Equal("late\n", (string?)details[command]);
            JsonAssert.Equal(new JsonArray(command, "echo second"), details["cmd_list"]);
            Assert.NotNull((string?)details["time_started"]);
            var finished = await client.ReceiveAsync(f => (string?)f["args"]?["state"] == "finished");
            Assert.Equal("early\nlate\n", (string?)finished["args"]!["process_details"]![command]);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task BurstOfJobs_ReachesASubscriberWhole_EvenWithTheSmallestSubscriberBuffer()
    {
        // The dispatcher's subscribers may lag by 16 events here; the protocol's feed, which serves every client, must not.
        await using var server = await TestServer.StartAsync(dispatcher: d => d.Services.Configure<DispatcherOptions>(o => o.EventBufferCapacity = 16));
        await using var client = await server.ConnectAsync("admin");
        await client.RequestAsync("events", "subscribe", "dispatcher");
        const int Jobs = 300;
        for (var i = 0; i < Jobs; i++)
        {
            await server.Dispatcher.EnqueueAsync(new JobRequest($"b{i}", ["true"]));
        }

        var pending = new HashSet<string>();
        var finished = new HashSet<string>();
        while (finished.Count < Jobs)
        {
            var args = (await client.ReceiveAsync(f => (string?)f["name"] == "dispatcher"))["args"]!;
            _ = (string?)args["state"] switch
            {
                "pending" => pending.Add((string)args["process_id"]!),
                "finished" => finished.Add((string)args["process_id"]!),
                _ => false,
            };
        }

        Assert.Equal(Jobs, pending.Count);
    }

    [Fact]
    public async Task EventsAndPipelinedReplies_OnOneConnection_ArriveWholeInOrder_NoneLost()
    {
        // Events are sent by the feed's thread when the connection's queue is empty, by the send loop otherwise: with replies
        // queued between them, every frame must still arrive whole, each event once and in the order of its number.
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        await client.RequestAsync("events", "subscribe", "dispatcher");
        const int Jobs = 150;
        const int Lists = 40;
        var run = new StringBuilder("{\"action\":\"run\"");
        for (var i = 0; i < Jobs; i++)
        {
            run.Append(CultureInfo.InvariantCulture, $",\"o{i}\":\"true\"");
        }

        var submitted = server.PutAsync("/rpc/dispatcher", run.Append('}').ToString());
        for (var i = 0; i < Lists; i++)
        {
            await client.SendTextAsync($$$"""{"namespace":"rpc","name":"dispatcher","id":"l{{{i}}}","args":{"action":"list"}}""");
        }

        Assert.Equal(HttpStatusCode.OK, (await submitted).Status);
        var replies = new List<string>();
        var states = new Dictionary<string, List<string>>();
        long? last = null;
        var finished = 0;
        while (finished < Jobs || replies.Count < Lists)
        {
            var frame = await client.ReceiveAsync();
            if ((string?)frame["name"] == "response")
            {
                replies.Add((string)frame["id"]!);
                continue;
            }

            Assert.Equal("dispatcher", (string?)frame["name"]);
            var seq = (long)frame["seq"]!;
            Assert.True(last is null || seq == last + 1, $"event {seq} after {last}");
            last = seq;
            var args = frame["args"]!;
            var id = (string)args["process_id"]!;
            var state = (string)args["state"]!;
            (states.TryGetValue(id, out var list) ? list : states[id] = []).Add(state);
            finished += state == "finished" ? 1 : 0;
        }

        Assert.Equal(Enumerable.Range(0, Lists).Select(i => $"l{i}"), replies);
        Assert.Equal(Jobs, states.Count);
        Assert.All(states.Values, s => Assert.Equal(["pending", "running", "finished"], s));
    }

    [Fact]
    public async Task SubscriberThatDropsItsConnectionMidBurst_CostsTheOthersNoEvent()
    {
        // Frames to a connection that is gone fail in whichever thread sends them (the feed's or the send loop): the others
        // keep every event, and the server keeps serving.
        await using var server = await TestServer.StartAsync();
        await using var stays = await server.ConnectAsync("admin");
        var dropped = await server.ConnectAsync("admin");
        await stays.RequestAsync("events", "subscribe", "dispatcher");
        await dropped.RequestAsync("events", "subscribe", "dispatcher");
        const int Jobs = 200;
        var run = new StringBuilder("{\"action\":\"run\"");
        for (var i = 0; i < Jobs; i++)
        {
            run.Append(CultureInfo.InvariantCulture, $",\"d{i}\":\"true\"");
        }

        Assert.Equal(HttpStatusCode.OK, (await server.PutAsync("/rpc/dispatcher", run.Append('}').ToString())).Status);
        await dropped.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
        dropped.Socket.Abort();
        await dropped.DisposeAsync();

        var finished = new HashSet<string>();
        while (finished.Count < Jobs)
        {
            var args = (await stays.ReceiveAsync(f => (string?)f["name"] == "dispatcher"))["args"]!;
            if ((string?)args["state"] == "finished")
            {
                Assert.True(finished.Add((string)args["process_id"]!));
            }
        }

        await using var later = await server.ConnectAsync("admin");
        Assert.Equal("response", (string?)(await later.DispatcherAsync(new JsonObject { ["action"] = "list" }))["name"]);
    }

    [Fact]
    public async Task Enricher_SetsEventSystemAndFields_ForJobsTheHostRecognises()
    {
        await using var server = await TestServer.StartAsync(dispatcher: d => d.AddEventEnricher<PkgEnricher>());
        await using var client = await server.ConnectAsync("admin");
        await client.RequestAsync("events", "subscribe", "dispatcher");

        // Not awaiting the reply (events may come first, and waiting for the reply would skip them).
        await client.SendTextAsync("""{"namespace":"rpc","name":"dispatcher","id":"run-pkg","args":{"action":"run","sysadm_pkg_install-1":"echo installing","other":"true"}}""");
        var finished = new Dictionary<string, JsonNode>();
        while (finished.Count < 2)
        {
            var frame = await client.ReceiveAsync(f => (string?)f["args"]?["state"] == "finished");
            finished[(string)frame["args"]!["process_id"]!] = frame["args"]!;
        }

        Assert.Equal("sysadm/pkg", (string?)finished["sysadm_pkg_install-1"]["event_system"]);
        Assert.Equal("installing\n", (string?)finished["sysadm_pkg_install-1"]["pkg_log"]);
        Assert.Null(finished["other"]["event_system"]);
    }

    [Fact]
    public async Task Unsubscribe_StopsEvents()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        await client.RequestAsync("events", "subscribe", "dispatcher");
        Assert.Equal("response", (string?)(await client.RequestAsync("events", "unsubscribe", "dispatcher"))["name"]);

        await client.DispatcherAsync(new JsonObject { ["action"] = "run", ["quiet"] = "true" });
        await server.Dispatcher.WaitForCompletionAsync("quiet").WaitAsync(TestServer.Patience);
        var list = await client.DispatcherAsync(new JsonObject { ["action"] = "list" });

        // The reply to list is the next frame: no event frame came in between.
        Assert.Equal("response", (string?)list["name"]);
        await client.SendTextAsync("""{"namespace":"rpc","name":"identify","id":"last","args":""}""");
        Assert.Equal("last", (string?)(await client.ReceiveAsync())["id"]);
    }

    [Fact]
    public async Task SlowSubscriber_IsDisconnected_WithoutSlowingOthersOrTheDispatcher()
    {
        // Small socket buffers on both sides (no autotuning), so that what the slow client does not read piles up in the
        // server's queue rather than in megabytes of kernel buffers.
        await using var server = await TestServer.StartAsync(
            webSocket: o => { o.SendQueueCapacity = 256; o.SendQueueBytes = 8 * 1024 * 1024; },
            protocol: o => o.EventUpdateInterval = TimeSpan.FromMilliseconds(5),
            dispatcher: d => d.Services.Configure<DispatcherOptions>(o => o.MaxOutputCharacters = 64 * 1024),
            host: b => b.WebHost.UseSockets(o => o.CreateBoundListenSocket = endpoint =>
            {
                var listen = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
                listen.SendBufferSize = 64 * 1024; // inherited by accepted connections
                return listen;
            }));
        await using var slow = await server.ConnectAsync("reader", receiveBufferBytes: 64 * 1024);
        await slow.RequestAsync("events", "subscribe", "dispatcher");
        await using var fast = await server.ConnectAsync("reader");
        await fast.RequestAsync("events", "subscribe", "dispatcher");

        // About 80 MB of output over about 8 s: some 1 600 frames of up to 64 Ki characters, more than the network and the
        // slow client's queue (8 MiB) can hold while it never reads; the fast client may lag by up to 128 such frames. On a
        // loaded machine the feed sends fewer, fuller frames (each at most 64 Ki characters): with half of this output, once
        // in a full CI run, the slow client's queue never overflowed and it was not dropped.
        await server.Dispatcher.EnqueueAsync(new JobRequest("loud", ["sh -c \"for i in $(seq 400); do head -c 200000 /dev/zero | tr '\\0' x; sleep 0.01; done\""]));
        var frames = 0;
        using (var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1)))
        {
            while (await fast.ReceiveTextAsync(cts.Token) is { } text)
            {
                frames++;
                if (text.Contains("\"state\":\"finished\"", StringComparison.Ordinal))
                {
                    break;
                }
            }
        }

        Assert.True(frames > 100, $"the fast client got only {frames} frames");
        Assert.Equal(JobOutcome.Succeeded, (await server.Dispatcher.WaitForCompletionAsync("loud").WaitAsync(TestServer.Patience)).Outcome);

        // The slow client was dropped: reading now drains what the network held, then the connection ends.
        var ended = false;
        try
        {
            using var cts = new CancellationTokenSource(TestServer.Patience);
            while (await slow.ReceiveTextAsync(cts.Token) is not null)
            {
            }

            ended = true;
        }
        catch (WebSocketException)
        {
            ended = true;
        }

        Assert.True(ended);
        Assert.NotEqual(WebSocketState.Open, slow.Socket.State);
        Assert.Equal("response", (string?)(await fast.DispatcherAsync(new JsonObject { ["action"] = "list" }))["name"]);
    }

    [Fact]
    public async Task TwentyConcurrentClients_MixingRunListKill_GetEveryReply()
    {
        await using var server = await TestServer.StartAsync();
        var killed = new System.Collections.Concurrent.ConcurrentDictionary<string, bool>();
        var clients = Enumerable.Range(0, 20).Select(async c =>
        {
            await using var client = await server.ConnectAsync("admin");
            var replies = 0;
            for (var i = 0; i < 15; i++)
            {
                var id = $"c{c}-{i}";
                var run = await client.DispatcherAsync(new JsonObject { ["action"] = "run", [id] = i % 3 == 0 ? "sleep 300" : "true" });
                JsonAssert.Equal(new JsonArray(id), run["args"]!["started"]);
                var list = await client.DispatcherAsync(new JsonObject { ["action"] = "list" });
                Assert.NotNull(list["args"]!["jobs"]);
                var kill = await client.DispatcherAsync(new JsonObject { ["action"] = "kill", ["job_id"] = new JsonArray(id) });
                var killedNow = kill["args"]!["killed"]!["jobs"]!.AsArray().Select(k => (string)k!).ToArray();
                if (i % 3 == 0)
                {
                    Assert.Equal([id], killedNow);
                }

                killed[id] = killedNow.Contains(id);

                replies += 3;
            }

            return replies;
        }).ToArray();

        var counts = await Task.WhenAll(clients).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.All(counts, n => Assert.Equal(45, n));
        for (var c = 0; c < 20; c++)
        {
            for (var i = 0; i < 15; i++)
            {
                var result = await server.Dispatcher.WaitForCompletionAsync($"c{c}-{i}").WaitAsync(TestServer.Patience);
                // A `true` job may still be running when its kill arrives: the kill reply says which happened.
                Assert.Equal(killed[$"c{c}-{i}"] ? JobOutcome.Killed : JobOutcome.Succeeded, result.Outcome);
            }
        }
    }

    private sealed class PkgEnricher : IDispatcherEventEnricher
    {
        public void Enrich(DispatcherEventContext context)
        {
            if (!context.JobId.StartsWith("sysadm_pkg", StringComparison.Ordinal))
            {
                return;
            }

            context.SetEventSystem("sysadm/pkg");
            if (context.Result is { } result)
            {
                context.Args["pkg_log"] = string.Concat(result.CommandResults.Select(c => c.Output));
            }
        }
    }
}
