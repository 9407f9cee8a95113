using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Transports.Tests;

public sealed class WebSocketHostileInputTests
{
    /// <summary>Frames that must each get an error envelope (400 or 404) and change nothing.</summary>
    public static IEnumerable<string> HostileFrames()
    {
        // Not JSON, or not an object.
        string[] notObjects =
        [
            "", " ", "{", "}", "[", "{\"namespace\":", "nul", "tru", "{'a':1}", "{\"a\":1,}", "{\"a\" 1}", "\u0000", "\\", "{\"a\":\"\\x\"}",
            "{\"a\":\"unterminated}", "123", "-1", "1e999", "\"string\"", "true", "false", "null", "[]", "[{}]", "[1,2,3]",
            "{}{}", "{} trailing", "/* comment */ {}", "\uFEFF{}", "{\"namespace\":\"rpc\",\"name\":\"dispatcher\"", new string('[', 5000),
        ];
        foreach (var f in notObjects)
        {
            yield return f;
        }

        // Deep nesting, in args and at the top.
        yield return "{\"namespace\":\"rpc\",\"name\":\"dispatcher\",\"id\":\"d\",\"args\":" + new string('[', 200) + new string(']', 200) + "}";
        yield return "{\"namespace\":\"rpc\",\"name\":\"dispatcher\",\"id\":\"d\",\"args\":" + string.Concat(Enumerable.Repeat("{\"a\":", 100)) + "1" + new string('}', 100) + "}";

        // Wrong types of envelope members.
        object[] badValues = [1, true, false, new JsonArray(), new JsonObject(), 1.5];
        foreach (var bad in badValues)
        {
            yield return new JsonObject { ["namespace"] = JsonValue(bad), ["name"] = "dispatcher", ["id"] = "t", ["args"] = new JsonObject { ["action"] = "list" } }.ToJsonString();
            yield return new JsonObject { ["namespace"] = "rpc", ["name"] = JsonValue(bad), ["id"] = "t", ["args"] = new JsonObject { ["action"] = "list" } }.ToJsonString();
            yield return new JsonObject { ["namespace"] = "rpc", ["name"] = "dispatcher", ["id"] = "t", ["args"] = new JsonObject { ["action"] = JsonValue(bad) } }.ToJsonString();
            if (bad is not JsonArray)
            {
                // (An empty array of ids is a valid kill of nothing.)
                yield return new JsonObject { ["namespace"] = "rpc", ["name"] = "dispatcher", ["id"] = "t", ["args"] = new JsonObject { ["action"] = "kill", ["job_id"] = JsonValue(bad) } }.ToJsonString();
            }
        }

        foreach (var id in new JsonNode[] { true, new JsonArray(), new JsonObject() })
        {
            yield return new JsonObject { ["namespace"] = "rpc", ["name"] = "dispatcher", ["id"] = id, ["args"] = new JsonObject { ["action"] = "list" } }.ToJsonString();
        }

        // Missing pieces, unknown names and actions.
        string[] envelopes =
        [
            """{"name":"dispatcher","id":"m","args":{"action":"list"}}""",
            """{"namespace":"rpc","id":"m","args":{"action":"list"}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":"list"}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":["list"]}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":null}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":42}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":"explode"}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":""}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":"list "}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":"kill"}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":"kill","job_id":[1,2]}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":"kill","job_id":["a",null]}}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":"run"}}""",
            """{"namespace":"rpc","name":"nothing","id":"m","args":{"action":"list"}}""",
            """{"namespace":"nothing","name":"dispatcher","id":"m","args":{"action":"list"}}""",
            """{"namespace":"","name":"","id":"m","args":{}}""",
            """{"namespace":"../etc","name":"passwd","id":"m","args":{}}""",
            """{"namespace":"rpc","name":"System.IO.File","id":"m","args":{}}""",
            """{"namespace":"events","name":"publish","id":"m","args":"dispatcher"}""",
            """{"namespace":"events","name":"subscribe","id":"m","args":42}""",
            """{"namespace":"events","name":"subscribe","id":"m","args":[1]}""",
            """{"namespace":"events","name":"subscribe","id":"m","args":{"x":1}}""",
            """{"namespace":"rpc","name":"auth","id":"m","args":"admin"}""",
            """{"namespace":"rpc","name":"auth","id":"m","args":{"username":1,"password":"x"}}""",
            """{"namespace":"rpc","name":"auth","id":"m","args":{"username":"admin"}}""",
            """{"namespace":"rpc","name":"auth_token","id":"m","args":{"token":7}}""",
            """{"namespace":"rpc","name":"auth_token","id":"m","args":[]}""",
            """{"namespace":"rpc","name":"dispatcher","id":"m","args":{"action":["run"],"x":"true"}}""",
        ];
        foreach (var e in envelopes)
        {
            yield return e;
        }

        // Hostile strings.
        yield return "{\"namespace\":\"rpc\",\"name\":\"" + new string('n', 100_000) + "\",\"id\":\"m\",\"args\":{}}";
        yield return "{\"namespace\":\"rpc\",\"name\":\"\\ud800\",\"id\":\"m\",\"args\":{}}";
        yield return "{\"namespace\":\"rpc\",\"name\":\"dispatcher\",\"id\":\"m\",\"args\":{\"action\":\"\\u0000list\"}}";
        yield return "{\"namespace\":\"rpc\",\"name\":\"dispatcher\",\"id\":\"m\",\"args\":{\"action\":\"kill\",\"job_id\":{\"$ne\":null}}}";
        for (var i = 0; i < 10; i++)
        {
            yield return "{\"namespace\":\"rpc\",\"name\":\"dispatcher\",\"id\":\"m\",\"args\":{\"action\":\"" + new string('x', i * 1000) + "y\"}}";
        }
    }

    private static JsonNode? JsonValue(object value) => value switch
    {
        JsonNode node => node.DeepClone(),
        int i => i,
        bool b => b,
        double d => d,
        _ => null,
    };

    [Fact]
    public async Task HostileFrames_EachGetAnErrorEnvelope_AndNothingIsLostOrWedged()
    {
        var frames = HostileFrames().ToList();
        Assert.True(frames.Count >= 100, $"the corpus has only {frames.Count} frames");
        await using var server = await TestServer.StartAsync();
        await server.Dispatcher.EnqueueAsync(new JobRequest("blocker", ["sleep 300"]) { Queue = "pkg_queue" });
        await server.Dispatcher.EnqueueAsync(new JobRequest("queued", ["true"]) { Queue = "pkg_queue" });
        await using var client = await server.ConnectAsync("admin");

        foreach (var frame in frames)
        {
            await client.SendTextAsync(frame);
            JsonNode reply;
            try
            {
                reply = await client.ReceiveAsync();
            }
            catch (WebSocketException ex)
            {
                throw new InvalidOperationException($"frame {Preview(frame)} broke the connection", ex);
            }

            Assert.True((string?)reply["name"] == "error", $"frame {Preview(frame)} got {Preview(reply.ToJsonString())}");
            var code = (string?)reply["args"]!["code"];
            Assert.True(code is "400" or "404", $"frame {Preview(frame)} got code {code}");
            Assert.False(string.IsNullOrWhiteSpace((string?)reply["args"]!["message"]));
        }

        // Binary frames too.
        await client.SendBinaryAsync([0x7b, 0x7d]);
        JsonAssert.IsError(await client.ReceiveAsync(), 400);
        await client.SendBinaryAsync(Encoding.UTF8.GetBytes("""{"namespace":"rpc","name":"dispatcher","id":"b","args":{"action":"list"}}"""));
        JsonAssert.IsError(await client.ReceiveAsync(), 400);

        // The same connection still works, a new one too, and the queued jobs are where they were.
        var list = await client.DispatcherAsync(new JsonObject { ["action"] = "list" });
        Assert.Equal(["blocker", "queued"], list["args"]!["jobs"]!["pkg_queue"]!.AsObject().Select(kv => kv.Key));
        await using var fresh = await server.ConnectAsync("reader");
        Assert.Equal("response", (string?)(await fresh.DispatcherAsync(new JsonObject { ["action"] = "list" }))["name"]);
        await server.Dispatcher.KillAsync(["blocker", "queued"]);
    }

    [Fact]
    public async Task OversizeFrame_ClosesCleanlyWithAReason_AndTheServerKeepsServing()
    {
        await using var server = await TestServer.StartAsync(webSocket: o => o.MaxMessageBytes = 64 * 1024);
        await using var client = await server.ConnectAsync("admin");

        var big = "{\"namespace\":\"rpc\",\"name\":\"dispatcher\",\"id\":\"big\",\"args\":{\"action\":\"list\",\"pad\":\"" + new string('x', 70 * 1024) + "\"}}";
        await client.SendTextAsync(big);

        Assert.Null(await client.ReceiveTextAsync(new CancellationTokenSource(TestServer.Patience).Token));
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, client.Socket.CloseStatus);
        Assert.Equal("Message larger than 65536 bytes", client.Socket.CloseStatusDescription);
        await using var fresh = await server.ConnectAsync("admin");
        Assert.Equal("response", (string?)(await fresh.DispatcherAsync(new JsonObject { ["action"] = "list" }))["name"]);
    }

    private static string Preview(string s) => s.Length > 120 ? s[..120] + "…" : s;
}
