using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Dispatcher.Transports.Tests.Issues;

/// <summary>Regression tests of issue 12 (hardening), the wire and security items. Each failed on the code before its fix.</summary>
public sealed class WireHardeningTests
{
    private static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement.Clone();

    private static JsonObject Auth(string user, string password) => new() { ["username"] = user, ["password"] = password };

    private static bool IsTooMany(JsonNode reply) =>
        (string?)reply["name"] == "error" && (string?)reply["args"]?["message"] == ProtocolAuthenticator.TooManyFailures;

    // ---- Item 1: the login throttle ----

    [Fact]
    public async Task Throttle_SuccessfulLoginOfAnotherUser_DoesNotEraseFailures()
    {
        await using var server = await TestServer.StartAsync();
        await using var ws = await server.ConnectAsync();
        var blocked = false;
        for (var round = 0; round < 4 && !blocked; round++)
        {
            for (var i = 0; i < 4 && !blocked; i++)
            {
                blocked = IsTooMany(await ws.RequestAsync("rpc", "auth", Auth("admin", "guess-" + i)));
            }

            if (!blocked)
            {
                var ok = await ws.RequestAsync("rpc", "auth", Auth("reader", TestAuthenticator.PasswordOf("reader")));
                blocked = IsTooMany(ok);
            }
        }

        Assert.True(blocked, "16 wrong admin passwords with a correct reader login after every 4 were never blocked");
    }

    [Fact]
    public async Task Throttle_ValidAuthToken_DoesNotEraseFailures()
    {
        await using var server = await TestServer.StartAsync();
        var token = (string)(await server.Services.GetRequiredService<ProtocolServer>().HandleAsync(
            new ProtocolConnection("test", "192.0.2.1"), "rpc", "auth", "t", Json("""{"username":"reader","password":"reader-secret"}"""),
            CancellationToken.None)).Args![0]!;
        await using var ws = await server.ConnectAsync();
        var blocked = false;
        for (var round = 0; round < 4 && !blocked; round++)
        {
            for (var i = 0; i < 4 && !blocked; i++)
            {
                blocked = IsTooMany(await ws.RequestAsync("rpc", "auth", Auth("admin", "guess-" + i)));
            }

            blocked = blocked || IsTooMany(await ws.RequestAsync("rpc", "auth_token", new JsonObject { ["token"] = token }));
        }

        Assert.True(blocked);
    }

    [Fact]
    public async Task Throttle_FailuresForOneUserFromManyAddresses_BlockThatUser()
    {
        await using var server = await TestServer.StartAsync();
        var handler = server.Services.GetRequiredService<ProtocolServer>();
        for (var i = 0; i < 5; i++)
        {
            var session = new ProtocolConnection("test", $"198.51.100.{i}");
            await handler.HandleAsync(session, "rpc", "auth", null, Json("""{"username":"admin","password":"wrong"}"""), CancellationToken.None);
        }

        // A sixth address, even with the right password, waits out the window: many addresses do not lift the limit.
        var reply = await handler.HandleAsync(new ProtocolConnection("test", "198.51.100.200"), "rpc", "auth", null,
            Json("""{"username":"admin","password":"admin-secret"}"""), CancellationToken.None);
        Assert.Equal(401, reply.Status);
        Assert.Equal(ProtocolAuthenticator.TooManyFailures, (string?)reply.Args!["message"]);

        // Another user is not affected.
        var other = await handler.HandleAsync(new ProtocolConnection("test", "198.51.100.201"), "rpc", "auth", null,
            Json("""{"username":"reader","password":"reader-secret"}"""), CancellationToken.None);
        Assert.Equal(200, other.Status);
    }

    [Fact]
    public async Task Throttle_HttpBasicAndBearer_SuccessesDoNotEraseFailures()
    {
        await using var server = await TestServer.StartAsync();
        var blocked = false;
        for (var round = 0; round < 4 && !blocked; round++)
        {
            for (var i = 0; i < 4 && !blocked; i++)
            {
                using var wrong = new HttpRequestMessage(HttpMethod.Put, "/rpc/dispatcher") { Content = new StringContent("""{"action":"list"}""", Encoding.UTF8, "application/json") };
                wrong.Headers.Authorization = i % 2 == 0 ? TestServer.Basic("admin", "guess") : new AuthenticationHeaderValue("Bearer", "no-such-token");
                var response = await server.Client.SendAsync(wrong);
                blocked = (await response.Content.ReadAsStringAsync()).Contains(ProtocolAuthenticator.TooManyFailures, StringComparison.Ordinal);
            }

            var (_, body, _) = await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""", user: "reader");
            blocked = blocked || ((string?)body?["args"]?["message"]) == ProtocolAuthenticator.TooManyFailures;
        }

        Assert.True(blocked);
    }

    // ---- Item 15: tokens and the throttle table ----

    [Fact]
    public async Task Tokens_RevokeRacingUse_StaysRevoked()
    {
        var tokens = new TokenService(Options.Create(new DispatcherProtocolOptions()), TimeProvider.System);
        var user = new DispatcherUser("u", DispatcherAccess.Read);
        var resurrected = 0;
        for (var round = 0; round < 3000; round++)
        {
            var token = tokens.Issue(user);
            using var start = new Barrier(3);
            var users = Enumerable.Range(0, 2).Select(n => Task.Run(() =>
            {
                start.SignalAndWait();
                for (var i = 0; i < 20; i++)
                {
                    tokens.TryUse(token, out _);
                }
            })).ToArray();
            start.SignalAndWait();
            tokens.Revoke(token);
            await Task.WhenAll(users);
            if (tokens.TryUse(token, out _))
            {
                resurrected++;
            }
        }

        Assert.Equal(0, resurrected);
    }

    [Fact]
    public void Throttle_ManyAddresses_TableStaysBounded()
    {
        var throttle = new LoginThrottle(Options.Create(new DispatcherProtocolOptions()), TimeProvider.System);
        for (var i = 0; i < 150_000; i++)
        {
            throttle.Fail("a" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), null);
        }

        Assert.InRange(throttle.Count, 1, LoginThrottle.MaxEntries);
    }

    // ---- Item 5: bounded replies, short echoes ----

    [Fact]
    public async Task OversizedIdOrName_ErrorEchoesOnlyAShortPrefix()
    {
        var logs = new CapturingLoggerProvider();
        await using var server = await TestServer.StartAsync(host: b => b.Logging.AddProvider(logs));
        await using var ws = await server.ConnectAsync();
        var bigId = new string('i', 200_000);
        await ws.SendTextAsync(new JsonObject { ["namespace"] = "rpc", ["name"] = "identify", ["id"] = bigId, ["args"] = "" }.ToJsonString());
        var first = await ws.ReceiveTextAsync(new CancellationTokenSource(TestServer.Patience).Token);
        Assert.NotNull(first);
        Assert.InRange(first!.Length, 1, 2048);
        JsonAssert.IsError(JsonNode.Parse(first)!, 400);

        var bigName = new string('n', 800_000);
        await ws.SendTextAsync(new JsonObject { ["namespace"] = bigName, ["name"] = "x", ["id"] = "n", ["args"] = "" }.ToJsonString());
        var second = await ws.ReceiveTextAsync(new CancellationTokenSource(TestServer.Patience).Token);
        Assert.InRange(second!.Length, 1, 2048);
        Assert.All(logs.Lines, l => Assert.InRange(l.Length, 0, 4096));
    }

    [Fact]
    public async Task RepliesToAClientThatDoesNotRead_AreBoundedInBytes_AndTheWarningNamesTheByteLimit()
    {
        // The guarantee: for one connection the server holds at most SendQueueBytes of queued replies and events (plus the frame
        // it is writing); a client that lets more pile up is disconnected. The client here never reads until the server says it
        // gave up, so nothing depends on how fast either side runs. Small socket buffers on both ends (no autotuning): the network
        // and the transport's pipes then hold a few hundred KB at most, so 20 MB of replies can only pile up in the server.
        const int limit = 512 * 1024;
        const int networkSlack = 512 * 1024;
        var logs = new CapturingLoggerProvider();
        // A long close timeout: the client reads what was queued only after the server gave up, and on a loaded machine that can
        // take longer than the default 5 s the server gives a client to answer its close before dropping the connection.
        await using var server = await TestServer.StartAsync(
            webSocket: o =>
            {
                o.SendQueueBytes = limit;
                o.CloseTimeout = TimeSpan.FromSeconds(60);
            },
            host: b =>
            {
                b.Logging.AddProvider(logs);
                b.WebHost.UseSockets(o => o.CreateBoundListenSocket = endpoint =>
                {
                    var listen = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
                    listen.SendBufferSize = 16 * 1024; // inherited by accepted connections
                    return listen;
                });
            });
        using var fake = new FakePkg();

        // 1 running + 500 pending jobs in pkg_queue: each list reply is about 50 KB, 400 of them 20 MB.
        await server.Dispatcher.EnqueueAsync(new JobRequest("blocker", ["pkg install x"]) { Queue = "pkg_queue", Environment = fake.Environment });
        for (var i = 0; i < 500; i++)
        {
            await server.Dispatcher.EnqueueAsync(new JobRequest($"pending-{i:D4}-padding-padding", ["true"]) { Queue = "pkg_queue" });
        }

        await using var ws = await server.ConnectAsync("reader", receiveBufferBytes: 4096);
        var list = Encoding.UTF8.GetBytes("""{"namespace":"rpc","name":"dispatcher","id":"l","args":{"action":"list"}}""");
        using (var cts = new CancellationTokenSource(TestServer.Patience))
        {
            try
            {
                for (var i = 0; i < 400 && ws.Socket.State == WebSocketState.Open; i++)
                {
                    await ws.Socket.SendAsync(list, WebSocketMessageType.Text, true, cts.Token);
                }
            }
            catch (WebSocketException)
            {
                // The server may already have closed the connection: what it holds is checked below.
            }
        }

        // Still not reading: the server must give up on this client (the condition itself, awaited with a timeout).
        static bool IsSlowClientWarning(string l) => l.Contains("WebSocketSlowClient", StringComparison.Ordinal);
        var deadline = DateTime.UtcNow + TestServer.Patience;
        while (!logs.Lines.Any(IsSlowClientWarning) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.True(logs.Lines.Any(IsSlowClientWarning), $"a client that read nothing was not disconnected within {TestServer.Patience.TotalSeconds} s, so its 20 MB of replies piled up in the server");
        Assert.Contains(logs.Lines, l => IsSlowClientWarning(l) && l.Contains("524288 bytes", StringComparison.Ordinal));

        // Now read what the server still had for the client (its queue, the frame it was writing, the network's few hundred KB):
        // bounded by the limit, then the close.
        long bytes = 0;
        var replies = 0;
        using (var cts = new CancellationTokenSource(TestServer.Patience))
        {
            try
            {
                while (await ws.ReceiveTextAsync(cts.Token) is { } text)
                {
                    bytes += Encoding.UTF8.GetByteCount(text);
                    replies++;
                }
            }
            catch (WebSocketException)
            {
                // Closed without the handshake: also a close.
            }
        }

        Assert.InRange(bytes, 0, limit + networkSlack);
        Assert.InRange(replies, 0, 399);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, ws.Socket.CloseStatus);
        Assert.Contains("bytes", ws.Socket.CloseStatusDescription, StringComparison.Ordinal);
        await server.Dispatcher.KillAsync(["blocker"]);
    }

    // ---- Item 6: losing authentication ends the event subscription ----

    [Fact]
    public async Task Events_TokenRevokedByAuthClearElsewhere_EndsSubscription()
    {
        await using var server = await TestServer.StartAsync();
        await using var a = await server.ConnectAsync();
        var token = (string)(await a.RequestAsync("rpc", "auth", Auth("reader", "reader-secret")))["args"]![0]!;
        await using var b = await server.ConnectAsync();
        Assert.Equal("response", (string?)(await b.RequestAsync("rpc", "auth_token", new JsonObject { ["token"] = token }))["name"]);
        await b.RequestAsync("events", "subscribe", "dispatcher");

        await a.RequestAsync("rpc", "auth_clear", null);
        await AssertNoEventsReachAsync(server, b);
    }

    [Fact]
    public async Task Events_FailedRpcAuth_EndsSubscription()
    {
        await using var server = await TestServer.StartAsync();
        await using var b = await server.ConnectAsync("reader");
        await b.RequestAsync("events", "subscribe", "dispatcher");
        JsonAssert.IsError(await b.RequestAsync("rpc", "auth", Auth("reader", "wrong")), 401);
        await AssertNoEventsReachAsync(server, b);
    }

    [Fact]
    public async Task Events_TokenExpired_EndsSubscription()
    {
        var lifetime = TimeSpan.FromSeconds(2);
        await using var server = await TestServer.StartAsync(protocol: o => o.TokenLifetime = lifetime);
        await using var b = await server.ConnectAsync("reader");
        await b.RequestAsync("events", "subscribe", "dispatcher");

        // Waits for the condition itself: the token's lifetime passing without a request on it.
        var expires = DateTime.UtcNow + lifetime + TimeSpan.FromMilliseconds(500);
        while (DateTime.UtcNow < expires)
        {
            await Task.Delay(100);
        }

        await AssertNoEventsReachAsync(server, b);
    }

    /// <summary>
    /// Runs a job and waits until a freshly subscribed observer saw it finish (so the feed has offered every event of it to
    /// <paramref name="client"/> too), then asks <paramref name="client"/> something: no event may come before that reply.
    /// </summary>
    private static async Task AssertNoEventsReachAsync(TestServer server, WsClient client)
    {
        await using var observer = await server.ConnectAsync("admin");
        await observer.RequestAsync("events", "subscribe", "dispatcher");
        var jobId = "after-" + Guid.NewGuid().ToString("N");
        await observer.DispatcherAsync(new JsonObject { ["action"] = "run", [jobId] = "echo secret-output" });
        await observer.ReceiveAsync(f => (string?)f["args"]?["state"] == "finished" && (string?)f["args"]?["process_id"] == jobId);

        await client.SendTextAsync("""{"namespace":"rpc","name":"identify","id":"marker","args":""}""");
        using var cts = new CancellationTokenSource(TestServer.Patience);
        while (true)
        {
            var text = await client.ReceiveTextAsync(cts.Token);
            if (text is null)
            {
                return; // closing the connection also ends the subscription
            }

            var frame = JsonNode.Parse(text)!;
            Assert.NotEqual("events", (string?)frame["namespace"]);
            if ((string?)frame["id"] == "marker")
            {
                return;
            }
        }
    }

    // ---- Item 7: history is paged ----

    [Fact]
    public async Task History_LimitAndCursor_PageThroughEveryJobOnce()
    {
        await using var server = await TestServer.StartAsync();
        for (var i = 0; i < 5; i++)
        {
            var (status, _, _) = await server.PutAsync("/rpc/dispatcher", $$"""{"action":"run","h{{i}}":"echo {{i}}"}""");
            Assert.Equal(HttpStatusCode.OK, status);
        }

        await WaitForHistoryAsync(server, 5);
        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var args = new JsonObject { ["action"] = "history", ["limit"] = 2 };
            if (cursor is not null)
            {
                args["after"] = cursor;
            }

            var (status, body, _) = await server.PutAsync("/rpc/dispatcher", args.ToJsonString(), user: "reader");
            Assert.Equal(HttpStatusCode.OK, status);
            var page = body!["args"]!["history"]!.AsArray();
            Assert.InRange(page.Count, 1, 2);
            seen.AddRange(page.Select(j => (string)j!["process_id"]!));
            cursor = (string?)body["args"]!["next"];
            pages++;
        }
        while (cursor is not null && pages < 10);

        // Oldest finished first, each once.
        Assert.Equal(server.Dispatcher.ListFinished().Select(r => r.Id), seen);
        Assert.Equal(["h0", "h1", "h2", "h3", "h4"], seen.Order());
        Assert.Equal(3, pages);

        var (tooMany, error, _) = await server.PutAsync("/rpc/dispatcher", """{"action":"history","limit":100000}""");
        Assert.Equal(HttpStatusCode.BadRequest, tooMany);
        Assert.Contains("limit", (string?)error!["args"]!["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task History_DefaultCountAndByteBound_LimitOnePage()
    {
        await using var server = await TestServer.StartAsync(protocol: o =>
        {
            o.HistoryPageSize = 3;
            o.MaxHistoryReplyBytes = 64 * 1024;
        });
        var run = new JsonObject { ["action"] = "run" };
        for (var i = 0; i < 4; i++)
        {
            run[$"small{i}"] = "echo x";
        }

        // Each prints 40 000 characters: two of them exceed the 64 KiB bound.
        for (var i = 0; i < 3; i++)
        {
            run[$"big{i}"] = $"seq -s , 1 8000";
        }

        Assert.Equal(HttpStatusCode.OK, (await server.PutAsync("/rpc/dispatcher", run.ToJsonString())).Status);
        await WaitForHistoryAsync(server, 7);

        var (_, first, _) = await server.PutAsync("/rpc/dispatcher", """{"action":"history","job_id":["small0","small1","small2","small3"]}""");
        Assert.Equal(3, first!["args"]!["history"]!.AsArray().Count);
        Assert.NotNull((string?)first["args"]!["next"]);

        var (_, big, response) = await server.PutAsync("/rpc/dispatcher", """{"action":"history","job_id":["big0","big1","big2"]}""");
        var bytes = (await response.Content.ReadAsByteArrayAsync()).Length;
        var count = big!["args"]!["history"]!.AsArray().Count;
        Assert.InRange(count, 1, 2);
        Assert.NotNull((string?)big["args"]!["next"]);
        Assert.InRange(bytes, 1, (64 * 1024) + 48_000);
    }

    private static async Task WaitForHistoryAsync(TestServer server, int count)
    {
        var deadline = DateTime.UtcNow + TestServer.Patience;
        while (server.Dispatcher.ListFinished().Count < count)
        {
            Assert.True(DateTime.UtcNow < deadline, "jobs did not finish");
            await Task.Delay(50);
        }
    }

    // ---- Item 10: stopping ----

    [Fact]
    public async Task Stopping_RefusesNewRuns_AndClosesWebSocketsWith1001()
    {
        var server = await TestServer.StartAsync();
        await using var ws = await server.ConnectAsync("admin");
        await ws.RequestAsync("events", "subscribe", "dispatcher");
        var lifetime = server.Services.GetRequiredService<IHostApplicationLifetime>();
        var handler = server.Services.GetRequiredService<ProtocolServer>();
        var stopping = Task.Run(() => server.DisposeAsync().AsTask());
        var deadline = DateTime.UtcNow + TestServer.Patience;
        while (!lifetime.ApplicationStopping.IsCancellationRequested)
        {
            Assert.True(DateTime.UtcNow < deadline);
            await Task.Delay(10);
        }

        var session = new ProtocolConnection("test", "192.0.2.9") { User = new DispatcherUser("admin", DispatcherAccess.Full) };
        var refused = await handler.HandleAsync(session, "rpc", "dispatcher", "r", Json("""{"action":"run","late":"echo late"}"""), CancellationToken.None);
        Assert.Equal(503, refused.Status);
        Assert.Contains("stopping", (string?)refused.Args!["message"], StringComparison.Ordinal);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (await ws.ReceiveTextAsync(cts.Token) is not null)
        {
        }

        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, ws.Socket.CloseStatus);
        await stopping;
    }

    // ---- Item 11: the job environment ----

    [Fact]
    public async Task JobEnvironment_DropsHostVariablesThatLookLikeSecrets_UnlessTheHostChangesThePatterns()
    {
        Environment.SetEnvironmentVariable("HW12_DB_PASSWORD", "pw-hw12");
        Environment.SetEnvironmentVariable("Users__7__Password", "users-hw12");
        Environment.SetEnvironmentVariable("HW12_PLAIN", "plain-hw12");
        await using (var server = await TestServer.StartAsync())
        {
            var env = await RunAndReadOutputAsync(server, "env");
            Assert.DoesNotContain("pw-hw12", env, StringComparison.Ordinal);
            Assert.DoesNotContain("users-hw12", env, StringComparison.Ordinal);
            Assert.Contains("HW12_PLAIN=plain-hw12", env, StringComparison.Ordinal);
            Assert.Contains("PATH=", env, StringComparison.Ordinal);
        }

        await using (var server = await TestServer.StartAsync(dispatcher: d => d.Services.Configure<DispatcherOptions>(o =>
        {
            o.ExcludedEnvironmentVariables.Remove("*PASSWORD*");
            o.ExcludedEnvironmentVariables.Remove("Users__*");
        })))
        {
            var env = await RunAndReadOutputAsync(server, "env");
            Assert.Contains("HW12_DB_PASSWORD=pw-hw12", env, StringComparison.Ordinal);
        }
    }

    private static async Task<string> RunAndReadOutputAsync(TestServer server, string command)
    {
        var id = "env-" + Guid.NewGuid().ToString("N");
        await server.Dispatcher.EnqueueAsync(new JobRequest(id, [command]));
        var deadline = DateTime.UtcNow + TestServer.Patience;
        while (server.Dispatcher.GetResult(id) is not { } result)
        {
            Assert.True(DateTime.UtcNow < deadline);
            await Task.Delay(50);
        }

        return server.Dispatcher.GetResult(id)!.CommandResults[0].Output;
    }

    // ---- Item 12: NUL and bad env keys ----

    [Theory]
    [InlineData("""{"action":"run","j":"echo a\u0000b"}""", "j")]
    [InlineData("""{"action":"run","j":{"commands":["echo a","echo b\u0000c"]}}""", "commands")]
    [InlineData("""{"action":"run","j":{"commands":"env","env":{"":"x"}}}""", "env")]
    [InlineData("""{"action":"run","j":{"commands":"env","env":{"A=B":"x"}}}""", "env")]
    [InlineData("""{"action":"run","j":{"commands":"env","env":{"K\u0000Z":"x"}}}""", "env")]
    [InlineData("""{"action":"run","j":{"commands":"env","env":{"K":"a\u0000b"}}}""", "env")]
    [InlineData("""{"action":"run","j\u0000k":"echo a"}""", "member name")]
    [InlineData("""{"action":"kill","job_id":"a\u0000b"}""", "job_id")]
    public async Task Run_NulOrBadEnvKey_Gets400NamingTheMember(string body, string member)
    {
        await using var server = await TestServer.StartAsync();
        var (status, reply, _) = await server.PutAsync("/rpc/dispatcher", body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains(member, (string?)reply!["args"]!["message"], StringComparison.Ordinal);
        Assert.Empty(server.Dispatcher.List());
        Assert.Empty(server.Dispatcher.ListFinished());
    }

    // ---- Item 14: Origin ----

    [Fact]
    public async Task Origin_CrossOriginBrowser_IsRejected_SameOriginAndNonBrowserPass()
    {
        await using var server = await TestServer.StartAsync();
        var evil = await Assert.ThrowsAsync<WebSocketException>(() => WsClient.ConnectAsync(server.WebSocketUri, ("Origin", "http://evil.example")));
        Assert.Contains("403", evil.Message + evil.InnerException?.Message, StringComparison.Ordinal);

        await using (var same = await WsClient.ConnectAsync(server.WebSocketUri, ("Origin", $"http://{server.Http.Authority}")))
        {
            Assert.Equal("server", (string?)(await same.RequestAsync("rpc", "identify", ""))["args"]!["type"]);
        }

        using var bare = new ClientWebSocket();
        await bare.ConnectAsync(server.WebSocketUri, CancellationToken.None);
        Assert.Equal(WebSocketState.Open, bare.State);
        bare.Abort();
    }

    [Fact]
    public async Task Origin_AllowedByTheHost_Passes()
    {
        await using var server = await TestServer.StartAsync(webSocket: o => o.AllowedOrigins.Add("http://dashboard.example"));
        await using var allowed = await WsClient.ConnectAsync(server.WebSocketUri, ("Origin", "http://dashboard.example"));
        Assert.Equal("server", (string?)(await allowed.RequestAsync("rpc", "identify", ""))["args"]!["type"]);
        await Assert.ThrowsAsync<WebSocketException>(() => WsClient.ConnectAsync(server.WebSocketUri, ("Origin", "http://evil.example")));
    }

    // ---- Item 15: a close racing a blocked write; slow bodies ----

    [Fact]
    public async Task CloseRacingABlockedReplyWrite_ThrowsNothingUnhandled()
    {
        var logs = new CapturingLoggerProvider();
        await using var server = await TestServer.StartAsync(webSocket: o => o.SendQueueCapacity = 2, host: b => b.Logging.AddProvider(logs));
        using var fake = new FakePkg();
        await server.Dispatcher.EnqueueAsync(new JobRequest("blocker", ["pkg install x"]) { Queue = "pkg_queue", Environment = fake.Environment });
        for (var i = 0; i < 300; i++)
        {
            await server.Dispatcher.EnqueueAsync(new JobRequest($"pending-{i:D4}-padding", ["true"]) { Queue = "pkg_queue" });
        }

        await using var ws = await server.ConnectAsync("admin", receiveBufferBytes: 4096);
        await ws.RequestAsync("events", "subscribe", "dispatcher");
        var list = Encoding.UTF8.GetBytes("""{"namespace":"rpc","name":"dispatcher","id":"l","args":{"action":"list"}}""");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            for (var i = 0; i < 300; i++)
            {
                await ws.Socket.SendAsync(list, WebSocketMessageType.Text, true, cts.Token);
            }

            // The reply writer is blocked on the full queue; an event now finds the queue full and closes the connection.
            await server.Dispatcher.EnqueueAsync(new JobRequest("trigger", ["true"]));
            while (await ws.ReceiveTextAsync(cts.Token) is not null)
            {
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
        }

        ws.Socket.Abort();
        await server.Dispatcher.KillAsync(["blocker"]);
        await server.DisposeAsync();
        Assert.DoesNotContain(logs.Lines, l => l.Contains("ChannelClosedException", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Http_SlowBodyTimeout_IsOneDebugLine()
    {
        var logs = new CapturingLoggerProvider();
        await using var server = await TestServer.StartAsync(host: b =>
        {
            b.Logging.AddProvider(logs).SetMinimumLevel(LogLevel.Debug);
            b.WebHost.ConfigureKestrel(k => k.Limits.MinRequestBodyDataRate = new Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate(1024 * 1024, TimeSpan.FromSeconds(2)));
        });
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, server.Http.Port);
        var stream = tcp.GetStream();
        var auth = TestServer.Basic("admin").Parameter;
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"PUT /rpc/dispatcher HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"));

        // Trickle nothing more: Kestrel times the body out. Wait until it hangs up.
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(TestServer.Patience);
        try
        {
            while (await stream.ReadAsync(buffer, cts.Token) > 0)
            {
            }
        }
        catch (IOException)
        {
        }

        var deadline = DateTime.UtcNow + TestServer.Patience;
        while (!logs.Lines.Any(l => l.Contains("HttpSlowBody", StringComparison.Ordinal)) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.Contains(logs.Lines, l => l.StartsWith("Debug", StringComparison.Ordinal) && l.Contains("HttpSlowBody", StringComparison.Ordinal));
        Assert.DoesNotContain(logs.Lines, l => l.StartsWith("Error", StringComparison.Ordinal));
    }
}

/// <summary>Keeps every log line as "Level EventName Message [exception type]".</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._lines.Enqueue($"{logLevel} {eventId.Name} {formatter(state, exception)} {exception?.GetType().Name} {exception?.InnerException?.GetType().Name}");
    }
}
