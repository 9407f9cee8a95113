using System.Text.Json.Nodes;
using Dispatcher.Protocol;

namespace Dispatcher.Transports.Tests;

/// <summary>Numbered dispatcher events and <c>events/subscribe</c> with <c>since</c> over WebSocket (issue 16).</summary>
public sealed class EventResumeTests
{
    [Fact]
    public async Task Subscribe_PlainForms_ReplyUnchanged_AndEventsCarryAnIncreasingSeq()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        JsonAssert.Equal(
            JsonNode.Parse("""{"args":{"subscribe":"dispatcher"},"id":"req-2","name":"response","namespace":"events"}"""),
            await client.RequestAsync("events", "subscribe", "dispatcher"));

        // The job is held pending (paused queue) until its pending event has arrived: a `true` that ends at once may reach the
        // feed only as finished.
        await server.Dispatcher.PauseQueueAsync(DispatcherQueues.NoQueue);
        await server.Dispatcher.EnqueueAsync(new JobRequest("one", ["true"]));
        var pending = await client.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
        await server.Dispatcher.ResumeQueueAsync(DispatcherQueues.NoQueue);
        var frames = new List<JsonNode> { pending };
        frames.AddRange(await ReceiveUntilFinishedAsync(client, "one"));
        var seqs = frames.Select(f => (long)f["seq"]!).ToList();
        Assert.Equal("pending", (string?)frames[0]["args"]!["state"]);
        Assert.Equal(Enumerable.Range((int)seqs[0], seqs.Count).Select(i => (long)i), seqs);
    }

    [Fact]
    public async Task Subscribe_ObjectFormWithSince_ReplaysWhatFollowedOnce_ThenGoesLive()
    {
        await using var server = await TestServer.StartAsync();
        await using var first = await server.ConnectAsync("admin");
        var reply = await first.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = new JsonArray("dispatcher") });
        var stream = (string)reply["args"]!["stream"]!;
        var head = (long)reply["args"]!["seq"]!;
        // Like the plain forms, the reply names the last channel subscribed to (as the sysadm server did), then where the stream stands.
        Assert.Equal("dispatcher", (string?)reply["args"]!["subscribe"]);

        for (var i = 0; i < 3; i++)
        {
            await server.Dispatcher.EnqueueAsync(new JobRequest($"j{i}", ["true"]));
        }

        var seen = await ReceiveUntilFinishedAsync(first, "j0", "j1", "j2");

        Assert.Equal(head + 1, (long)seen[0]["seq"]!);

        // A second subscriber that saw up to the third event gets the rest, byte for byte, then live events.
        await using var second = await server.ConnectAsync("reader");
        var since = (long)seen[2]["seq"]!;
        await second.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = "dispatcher", ["since"] = since, ["stream"] = stream });
        var replayed = new List<JsonNode>();
        for (var i = 3; i < seen.Count; i++)
        {
            replayed.Add(await second.ReceiveAsync(f => (string?)f["name"] == "dispatcher"));
        }

        Assert.Equal(seen.Skip(3).Select(f => f.ToJsonString()), replayed.Select(f => f.ToJsonString()));
        await server.Dispatcher.EnqueueAsync(new JobRequest("live", ["true"]));
        var live = await second.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
        Assert.Equal((long)seen[^1]["seq"]! + 1, (long)live["seq"]!);
        Assert.Equal("live", (string?)live["args"]!["process_id"]);
    }

    [Fact]
    public async Task Subscribe_SinceOlderThanTheBuffer_SendsAGapThatSaysRelist_ThenLiveEvents()
    {
        await using var server = await TestServer.StartAsync(protocol: o => o.EventReplayCapacity = 4);
        await using var first = await server.ConnectAsync("admin");
        var stream = (string)(await first.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = "dispatcher" }))["args"]!["stream"]!;
        for (var i = 0; i < 4; i++)
        {
            await server.Dispatcher.EnqueueAsync(new JobRequest($"j{i}", ["true"]));
            await ReceiveUntilFinishedAsync(first, $"j{i}");
        }

        await using var second = await server.ConnectAsync("admin");
        await second.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = "dispatcher", ["since"] = 1, ["stream"] = stream });
        var gap = await second.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
        Assert.Equal("gap", (string?)gap["args"]!["state"]);
        Assert.Equal("relist", (string?)gap["args"]!["action"]);
        Assert.Equal(1L, (long)gap["args"]!["since"]!);
        Assert.Contains("list the jobs again", (string?)gap["args"]!["message"], StringComparison.Ordinal);

        await server.Dispatcher.EnqueueAsync(new JobRequest("after", ["true"]));
        var next = await second.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
        Assert.Equal("after", (string?)next["args"]!["process_id"]);
        Assert.Equal((long)gap["seq"]! + 1, (long)next["seq"]!);
    }

    [Fact]
    public async Task Subscribe_SinceFromAnotherStream_SendsAGap()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        await client.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = "dispatcher", ["since"] = 0, ["stream"] = "restarted-server" });
        var gap = await client.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
        Assert.Equal("gap", (string?)gap["args"]!["state"]);
        Assert.Contains("restarted", (string?)gap["args"]!["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Subscribe_SysadmShapeWithSince_ReplaysTheSysadmFramesThatFollowed()
    {
        await using var server = await TestServer.StartAsync(protocol: o => o.EventShape = DispatcherEventShape.Sysadm);
        await using var first = await server.ConnectAsync("admin");
        var reply = await first.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = "dispatcher", ["shape"] = "sysadm" });
        var stream = (string)reply["args"]!["stream"]!;
        var head = (long)reply["args"]!["seq"]!;
        await server.Dispatcher.EnqueueAsync(new JobRequest("a", ["echo a"]));
        await server.Dispatcher.EnqueueAsync(new JobRequest("b", ["echo b"]));

        // An unrecognised job in the sysadm shape: a start marker, then the flat log; its pending event is suppressed.
        var seen = await ReceiveUntilFinishedAsync(first, "a", "b");
        Assert.Equal(4, seen.Count);
        Assert.All(seen, f => Assert.Null(f["args"]!["process_details"]));
        Assert.True((long)seen[0]["seq"]! > head);

        // A subscriber that saw only the first frame gets the other three, byte for byte, in the sysadm shape too.
        await using var second = await server.ConnectAsync("admin");
        await second.RequestAsync("events", "subscribe", new JsonObject
        {
            ["channels"] = new JsonArray("dispatcher"), ["since"] = (long)seen[0]["seq"]!, ["stream"] = stream, ["shape"] = "sysadm",
        });
        var replayed = new List<JsonNode>();
        for (var i = 1; i < seen.Count; i++)
        {
            replayed.Add(await second.ReceiveAsync(f => (string?)f["name"] == "dispatcher"));
        }

        Assert.Equal(seen.Skip(1).Select(f => f.ToJsonString()), replayed.Select(f => f.ToJsonString()));
    }

    [Theory]
    [InlineData("""{"since": 3}""", "\"channels\"")]
    [InlineData("""{"channels": "dispatcher", "since": -1}""", "\"since\"")]
    [InlineData("""{"channels": "dispatcher", "since": "x"}""", "\"since\"")]
    [InlineData("""{"channels": 7}""", "\"channels\"")]
    [InlineData("""{"channels": "dispatcher", "stream": 5}""", "\"stream\"")]
    public async Task Subscribe_BadObjectForm_Gets400NamingTheMember(string args, string member)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        var reply = await client.RequestAsync("events", "subscribe", JsonNode.Parse(args));
        Assert.Equal("error", (string?)reply["name"]);
        Assert.Equal("400", (string?)reply["args"]!["code"]);
        Assert.Contains(member, (string?)reply["args"]!["message"], StringComparison.Ordinal);

        // The connection goes on serving.
        Assert.Equal("response", (string?)(await client.RequestAsync("events", "subscribe", "dispatcher"))["name"]);
    }

    [Fact]
    public async Task ReplayBuffer_IsBoundedInBytes_KeepingTheLatest()
    {
        await using var server = await TestServer.StartAsync(protocol: o => o.EventReplayBytes = 1024);
        await using var first = await server.ConnectAsync("admin");
        var stream = (string)(await first.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = "dispatcher" }))["args"]!["stream"]!;
        var big = new string('x', 600);
        await server.Dispatcher.EnqueueAsync(new JobRequest("big", ["echo " + big]));
        var frames = await ReceiveUntilFinishedAsync(first, "big");
        Assert.True(frames.Sum(f => f.ToJsonString().Length) > 1024);

        // Only the latest frames fit: a subscriber from the start gets a gap, then the newest frame still held (never none).
        await using var second = await server.ConnectAsync("admin");
        await second.RequestAsync("events", "subscribe", new JsonObject { ["channels"] = "dispatcher", ["since"] = (long)frames[0]["seq"]! - 1, ["stream"] = stream });
        Assert.Equal("gap", (string?)(await second.ReceiveAsync(f => (string?)f["name"] == "dispatcher"))["args"]!["state"]);
        var log = (DispatcherEventLog)server.Services.GetService(typeof(DispatcherEventLog))!;
        Assert.Equal((long)frames[^1]["seq"]!, log.Head);
    }

    /// <summary>Receives dispatcher frames until every one of the jobs has finished.</summary>
    private static async Task<List<JsonNode>> ReceiveUntilFinishedAsync(WsClient client, params string[] jobIds)
    {
        var frames = new List<JsonNode>();
        var open = new HashSet<string>(jobIds);
        while (open.Count > 0)
        {
            var frame = await client.ReceiveAsync(f => (string?)f["name"] == "dispatcher");
            frames.Add(frame);
            if ((string?)frame["args"]!["state"] == "finished")
            {
                open.Remove((string)frame["args"]!["process_id"]!);
            }
        }

        return frames;
    }
}
