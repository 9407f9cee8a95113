using System.Net.WebSockets;
using System.Text.Json.Nodes;

namespace Dispatcher.Transports.Tests;

public sealed class WebSocketContractTests
{
    private const string SpecJobId = "sysadm_pkg_install-{9c079421-ace9-4b6e-8870-d023b48f4c49}";
    private const string SpecCommand = "pkg install -y --repository \"pcbsd-major\"misc/pcbsd-meta-mate";

    [Fact]
    public async Task SpecListAndKillExamples_MatchGoldenJson()
    {
        await using var server = await TestServer.StartAsync();
        using var pkg = new FakePkg();
        await server.Dispatcher.EnqueueAsync(new JobRequest(SpecJobId, [SpecCommand]) { Queue = "pkg_queue", Environment = pkg.Environment });
        await using var client = await server.ConnectAsync("admin");

        // The spec's WebSocket requests, byte for byte.
        await client.SendTextAsync("""{ "args" : { "action" : "list" }, "namespace" : "rpc", "name" : "dispatcher", "id" : "fooid" }""");
        JsonAssert.Equal(JsonAssert.Golden("ws-list.json"), await client.ReceiveAsync());

        // The fake pkg has printed its arguments before the kill (on a loaded machine the kill could come first, and the
        // output asserted below would be empty).
        var deadline = DateTime.UtcNow + TestServer.Patience;
        while ((await server.Dispatcher.ReadLogAsync(SpecJobId, 0, 64)).Text.Length == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "The fake pkg printed nothing.");
            await Task.Delay(10);
        }

        await client.SendTextAsync($$"""{ "args" : { "action" : "kill", "job_id" : "{{SpecJobId}}" }, "namespace" : "rpc", "name" : "dispatcher", "id" : "fooid" }""");
        JsonAssert.Equal(JsonAssert.Golden("ws-kill.json"), await client.ReceiveAsync());

        var result = await server.Dispatcher.WaitForCompletionAsync(SpecJobId).WaitAsync(TestServer.Patience);
        Assert.Equal(JobOutcome.Killed, result.Outcome);
        Assert.StartsWith("pkg install -y --repository pcbsd-majormisc/pcbsd-meta-mate", result.CommandResults[0].Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReplyKeys_AreInTheOrderTheSysadmServerWrote()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        await client.SendTextAsync("""{"namespace":"rpc","name":"dispatcher","id":"x","args":{"action":"list"}}""");

        var text = await client.ReceiveTextAsync(CancellationToken.None);

        Assert.Equal("""{"args":{"jobs":{}},"id":"x","name":"response","namespace":"rpc"}""", text);
    }

    [Fact]
    public async Task Identify_IsAnsweredBeforeAuthentication_EverythingElseIs401()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync();

        await client.SendTextAsync("""{"namespace":"rpc","name":"identify","id":"sysadm_client_identify","args":""}""");
        JsonAssert.Equal(
            JsonNode.Parse("""{"args":{"type":"server","hostname":"testhost"},"id":"sysadm_client_identify","name":"response","namespace":"rpc"}"""),
            await client.ReceiveAsync());

        JsonAssert.IsError(await client.DispatcherAsync(new JsonObject { ["action"] = "list" }), 401);
        JsonAssert.IsError(await client.DispatcherAsync(new JsonObject { ["action"] = "run", ["x"] = "true" }), 401);
        JsonAssert.IsError(await client.DispatcherAsync(new JsonObject { ["action"] = "kill", ["job_id"] = "x" }), 401);
        JsonAssert.IsError(await client.RequestAsync("events", "subscribe", "dispatcher"), 401);
        JsonAssert.IsError(await client.RequestAsync("rpc", "query", ""), 401);
        Assert.Null(server.Dispatcher.GetResult("x"));
    }

    [Theory]
    [InlineData("reader", "read", false)]
    [InlineData("admin", "read/write", true)]
    public async Task AccessMatrix(string user, string query, bool full)
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync(user);

        Assert.Equal(query, (string?)(await client.RequestAsync("rpc", "query", ""))["args"]!["rpc/dispatcher"]);
        Assert.Equal("response", (string?)(await client.DispatcherAsync(new JsonObject { ["action"] = "list" }))["name"]);
        Assert.Equal("response", (string?)(await client.RequestAsync("events", "subscribe", "dispatcher"))["name"]);
        var run = await client.DispatcherAsync(new JsonObject { ["action"] = "run", ["matrix"] = "sleep 300" });
        var kill = await client.DispatcherAsync(new JsonObject { ["action"] = "kill", ["job_id"] = "matrix" });
        if (full)
        {
            JsonAssert.Equal(new JsonArray("matrix"), run["args"]!["started"]);
            JsonAssert.Equal(new JsonArray("matrix"), kill["args"]!["killed"]!["jobs"]);
        }
        else
        {
            JsonAssert.IsError(run, 403);
            JsonAssert.IsError(kill, 403);
            Assert.Empty(server.Dispatcher.List());
        }
    }

    [Fact]
    public async Task Auth_IssuesTokenThatWorksOnAnotherConnection_AndAuthClearRevokesIt()
    {
        await using var server = await TestServer.StartAsync();
        await using var first = await server.ConnectAsync();
        var auth = await first.RequestAsync("rpc", "auth", new JsonObject { ["username"] = "admin", ["password"] = "admin-secret" });
        var token = (string)auth["args"]![0]!;
        Assert.Equal(300, (int)auth["args"]![1]!);
        Assert.True(token.Length >= 32);

        await using var second = await server.ConnectAsync();
        Assert.Equal("response", (string?)(await second.RequestAsync("rpc", "auth_token", new JsonObject { ["token"] = token }))["name"]);
        Assert.Equal("response", (string?)(await second.DispatcherAsync(new JsonObject { ["action"] = "list" }))["name"]);
        Assert.Equal("response", (string?)(await second.RequestAsync("rpc", "auth_clear", ""))["name"]);
        JsonAssert.IsError(await second.DispatcherAsync(new JsonObject { ["action"] = "list" }), 401);
        JsonAssert.IsError(await first.DispatcherAsync(new JsonObject { ["action"] = "list" }), 401);
        JsonAssert.IsError(await second.RequestAsync("rpc", "auth", new JsonObject { ["username"] = "admin", ["password"] = "wrong" }), 401);
    }

    [Fact]
    public async Task RepeatedFailedLogins_AreThrottled_AndTheSocketClosedWithTheSysadmReason()
    {
        await using var server = await TestServer.StartAsync(protocol: o => o.MaxFailedLogins = 3);
        await using var client = await server.ConnectAsync();
        var bad = new JsonObject { ["username"] = "admin", ["password"] = "nope" };

        JsonAssert.IsError(await client.RequestAsync("rpc", "auth", bad.DeepClone()), 401);
        JsonAssert.IsError(await client.RequestAsync("rpc", "auth", bad.DeepClone()), 401);
        var third = await client.RequestAsync("rpc", "auth", bad.DeepClone());
        JsonAssert.IsError(third, 401);
        Assert.Equal("Too Many Authorization Failures - Try again later", (string?)third["args"]!["message"]);
        Assert.Null(await client.ReceiveTextAsync(new CancellationTokenSource(TestServer.Patience).Token));
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, client.Socket.CloseStatus);
        Assert.Equal("Too Many Authorization Failures - Try again later", client.Socket.CloseStatusDescription);

        // Even the right password is refused from that address while it is blocked.
        await using var again = await server.ConnectAsync();
        var right = await again.RequestAsync("rpc", "auth", new JsonObject { ["username"] = "admin", ["password"] = "admin-secret" });
        Assert.Equal("Too Many Authorization Failures - Try again later", (string?)right["args"]!["message"]);
    }

    [Fact]
    public async Task NamesAndActions_AreCaseInsensitive_AndMissingIdEchoesTheName()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");

        await client.SendTextAsync("""{"namespace":"RPC","name":"Dispatcher","id":"c","args":{"ACTION":"LIST"}}""");
        Assert.Equal("response", (string?)(await client.ReceiveAsync())["name"]);
        await client.SendTextAsync("""{"namespace":"rpc","name":"dispatcher","action":"list"}""");
        var noId = await client.ReceiveAsync();
        Assert.Equal("dispatcher", (string?)noId["name"]);
        Assert.NotNull(noId["args"]!["jobs"]);
    }

    [Fact]
    public async Task Run_OldAndObjectForms_ReportsEveryRejectedIdWithAReason()
    {
        await using var server = await TestServer.StartAsync();
        await using var client = await server.ConnectAsync("admin");
        var dir = Directory.CreateTempSubdirectory("run-form-").FullName;

        var reply = await client.DispatcherAsync(new JsonObject
        {
            ["action"] = "run",
            ["one"] = "echo one",
            ["two"] = new JsonArray("echo a", "echo b"),
            ["obj"] = new JsonObject
            {
                ["commands"] = new JsonArray("sh -c \"pwd; echo $K\""),
                ["queue"] = "pkg_queue",
                ["workdir"] = dir,
                ["env"] = new JsonObject { ["K"] = "V" },
            },
            ["badqueue"] = new JsonObject { ["commands"] = "true", ["queue"] = "nope" },
            ["badvalue"] = 42,
            ["badmember"] = new JsonObject { ["commands"] = "true", ["colour"] = "red" },
            ["empty"] = new JsonArray(),
        });

        JsonAssert.Equal(new JsonArray("one", "two", "obj"), reply["args"]!["started"]);
        var rejected = reply["args"]!["rejected"]!.AsObject();
        Assert.Equal(["badqueue", "badvalue", "badmember", "empty"], rejected.Select(kv => kv.Key));
        Assert.Contains("nope", (string?)rejected["badqueue"], StringComparison.Ordinal);
        Assert.Contains("colour", (string?)rejected["badmember"], StringComparison.Ordinal);
        var obj = await server.Dispatcher.WaitForCompletionAsync("obj").WaitAsync(TestServer.Patience);
        Assert.Equal("pkg_queue", obj.Queue);
        Assert.Equal($"{dir}\nV\n", obj.CommandResults[0].Output);
        Assert.Equal(["a\n", "b\n"], (await server.Dispatcher.WaitForCompletionAsync("two")).CommandResults.Select(c => c.Output));

        var duplicate = await client.DispatcherAsync(new JsonObject { ["action"] = "run", ["dup"] = "sleep 300" });
        var again = await client.DispatcherAsync(new JsonObject { ["action"] = "run", ["dup"] = "true" });
        Assert.Empty(again["args"]!["started"]!.AsArray());
        Assert.Contains("already", (string?)again["args"]!["rejected"]!["dup"], StringComparison.Ordinal);
        JsonAssert.Equal(new JsonArray("dup"), duplicate["args"]!["started"]);
        await server.Dispatcher.KillAsync(["dup"]);
    }

    [Fact]
    public async Task IdleConnection_IsClosedWithAReason()
    {
        await using var server = await TestServer.StartAsync(webSocket: o => o.IdleTimeout = TimeSpan.FromMilliseconds(300));
        await using var client = await server.ConnectAsync();

        Assert.Null(await client.ReceiveTextAsync(new CancellationTokenSource(TestServer.Patience).Token));
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.Socket.CloseStatus);
        Assert.Equal("Idle timeout", client.Socket.CloseStatusDescription);
    }

    [Fact]
    public async Task PlainHttpRequestToTheWebSocketEndpoint_Gets400()
    {
        await using var server = await TestServer.StartAsync();
        var response = await server.Client.GetAsync("/");
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
    }
}
