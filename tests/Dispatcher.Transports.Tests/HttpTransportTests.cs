using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Transports.Tests;

public sealed class HttpTransportTests
{
    private const string SpecJobId = "sysadm_pkg_install-{9c079421-ace9-4b6e-8870-d023b48f4c49}";

    [Fact]
    public async Task SpecRestExamples_MatchGoldenJson()
    {
        await using var server = await TestServer.StartAsync();
        using var pkg = new FakePkg();
        await server.Dispatcher.EnqueueAsync(new JobRequest(SpecJobId, ["pkg install -y --repository \"pcbsd-major\"misc/pcbsd-meta-mate"])
        {
            Queue = "pkg_queue",
            Environment = pkg.Environment,
        });

        var list = await server.PutAsync("/rpc/dispatcher", """
            {
              "action" : "list"
            }
            """);
        Assert.Equal(HttpStatusCode.OK, list.Status);
        JsonAssert.Equal(JsonAssert.Golden("rest-list.json"), list.Body);
        Assert.Equal("application/json; charset=utf-8", list.Response.Content.Headers.ContentType?.ToString());

        var kill = await server.PutAsync("/rpc/dispatcher", $$"""
            {
              "action" : "kill",
              "job_id" : "{{SpecJobId}}"
            }
            """);
        Assert.Equal(HttpStatusCode.OK, kill.Status);
        JsonAssert.Equal(JsonAssert.Golden("rest-kill.json"), kill.Body);
    }

    [Fact]
    public async Task RunListKill_RoundTripOnRealProcesses()
    {
        await using var server = await TestServer.StartAsync();

        var run = await server.PutAsync("/rpc/dispatcher", """{"action":"run","rt-1":"sleep 300","rt-2":{"commands":["true"],"queue":"pkg_queue"},"rt-3":{"commands":"true","queue":"pkg_queue"}}""", method: HttpMethod.Post);
        Assert.Equal(HttpStatusCode.OK, run.Status);
        JsonAssert.Equal(new JsonArray("rt-1", "rt-2", "rt-3"), run.Body!["args"]!["started"]);

        var list = await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""");
        Assert.Equal("running", (string?)list.Body!["args"]!["jobs"]!["no_queue"]!["rt-1"]!["state"]);
        Assert.Null(list.Body!["args"]!["jobs"]!["no_queue"]!["rt-1"]!["queue_position"]);

        // A whole envelope works as the body too.
        var kill = await server.PutAsync("/rpc/dispatcher", """{"namespace":"rpc","name":"dispatcher","id":"k","args":{"action":"kill","job_id":["rt-1","nope"]}}""");
        JsonAssert.Equal(JsonNode.Parse("""{"args":{"killed":{"jobs":["rt-1"]}}}"""), kill.Body);
        Assert.Equal(JobOutcome.Killed, (await server.Dispatcher.WaitForCompletionAsync("rt-1").WaitAsync(TestServer.Patience)).Outcome);
        Assert.Equal(JobOutcome.Succeeded, (await server.Dispatcher.WaitForCompletionAsync("rt-3").WaitAsync(TestServer.Patience)).Outcome);
    }

    [Fact]
    public async Task GetWithABody_IsAcceptedAsTheOldServerDid()
    {
        await using var server = await TestServer.StartAsync();
        var get = await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""", method: HttpMethod.Get);
        Assert.Equal(HttpStatusCode.OK, get.Status);
        JsonAssert.Equal(JsonNode.Parse("""{"args":{"jobs":{}}}"""), get.Body);
    }

    [Theory]
    [InlineData(null, """{"action":"list"}""", HttpStatusCode.Unauthorized)]
    [InlineData(null, """{"action":"run","x":"true"}""", HttpStatusCode.Unauthorized)]
    [InlineData(null, """{"action":"kill","job_id":"x"}""", HttpStatusCode.Unauthorized)]
    [InlineData("reader", """{"action":"list"}""", HttpStatusCode.OK)]
    [InlineData("reader", """{"action":"run","x":"true"}""", HttpStatusCode.Forbidden)]
    [InlineData("reader", """{"action":"kill","job_id":"x"}""", HttpStatusCode.Forbidden)]
    [InlineData("admin", """{"action":"list"}""", HttpStatusCode.OK)]
    [InlineData("admin", """{"action":"run","x":"true"}""", HttpStatusCode.OK)]
    [InlineData("admin", """{"action":"kill","job_id":"x"}""", HttpStatusCode.OK)]
    public async Task AccessMatrix(string? user, string body, HttpStatusCode expected)
    {
        await using var server = await TestServer.StartAsync();

        var reply = await server.PutAsync("/rpc/dispatcher", body, user);

        Assert.Equal(expected, reply.Status);
        if (expected != HttpStatusCode.OK)
        {
            Assert.Equal(((int)expected).ToString(System.Globalization.CultureInfo.InvariantCulture), (string?)reply.Body!["args"]!["code"]);
            Assert.False(string.IsNullOrWhiteSpace((string?)reply.Body!["args"]!["message"]));
        }

        if (expected == HttpStatusCode.Unauthorized)
        {
            Assert.Contains("Basic", reply.Response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        }

        if (body.Contains("run", StringComparison.Ordinal) && expected != HttpStatusCode.OK)
        {
            Assert.Empty(server.Dispatcher.List());
            Assert.Null(server.Dispatcher.GetResult("x"));
        }
    }

    [Fact]
    public async Task BearerToken_FromWebSocketAuth_Works()
    {
        await using var server = await TestServer.StartAsync();
        await using var ws = await server.ConnectAsync();
        var auth = await ws.RequestAsync("rpc", "auth", new JsonObject { ["username"] = "reader", ["password"] = "reader-secret" });
        using var request = new HttpRequestMessage(HttpMethod.Put, "/rpc/dispatcher") { Content = new StringContent("""{"action":"list"}""", Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", (string)auth["args"]![0]!);

        var response = await server.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>Requests that must each get a clear error (status and JSON body) and leave the server serving.</summary>
    public static IEnumerable<object?[]> HostileRequests()
    {
        // Malformed or wrong-typed bodies → 400.
        string[] badBodies =
        [
            "{", "}", "nul", "[]", "\"list\"", "42", "null", "true", "{\"action\":}", "{\"action\":1}", "{\"action\":null}", "{\"action\":[]}",
            "{\"action\":{}}", "{}", "{\"action\":\"explode\"}", "{\"action\":\"kill\"}", "{\"action\":\"kill\",\"job_id\":1}",
            "{\"action\":\"kill\",\"job_id\":[1]}", "{\"action\":\"kill\",\"job_id\":{}}", "{\"action\":\"run\"}", "{\"args\":42,\"namespace\":\"rpc\"}",
            "{\"args\":{\"action\":1},\"name\":\"dispatcher\"}", new string('[', 1000) + new string(']', 1000), "{\"action\":\"\\ud800\"}",
            "{\"action\":\"list\"} trailing", "\uFEFF", " ",
        ];
        foreach (var body in badBodies)
        {
            yield return ["PUT", "/rpc/dispatcher", "application/json", body, "admin", 400];
        }

        // Unknown namespace/name → 404.
        foreach (var path in new[] { "/rpc/nothing", "/nothing/dispatcher", "/events/subscribe", "/rpc/dispatcherx", "/RPC/..%2F" })
        {
            yield return ["PUT", path, "application/json", "{\"action\":\"list\"}", "admin", 404];
        }

        // Wrong content types → 415.
        foreach (var type in new[] { "text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x", "image/png", "application/jsonx" })
        {
            yield return ["PUT", "/rpc/dispatcher", type, "{\"action\":\"list\"}", "admin", 415];
        }

        // Wrong verbs → 405.
        foreach (var verb in new[] { "DELETE", "PATCH", "OPTIONS", "TRACE" })
        {
            yield return [verb, "/rpc/dispatcher", "application/json", "{\"action\":\"list\"}", "admin", 405];
        }

        // Bad Authorization headers → 401.
        foreach (var header in new[] { "Basic", "Basic !!!notbase64", "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("nocolon")), "Basic " + Convert.ToBase64String([0xff, 0xfe, 0x3a]), "Bearer", "Bearer nosuchtoken", "Digest abc", "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("admin:wrong")) })
        {
            yield return ["PUT", "/rpc/dispatcher", "application/json", "{\"action\":\"list\"}", "!" + header, 401];
        }

        // Huge bodies → 413.
        yield return ["PUT", "/rpc/dispatcher", "application/json", "{\"action\":\"list\",\"pad\":\"" + new string('x', 2 * 1024 * 1024) + "\"}", "admin", 413];
        yield return ["PUT", "/rpc/dispatcher", "application/json", "chunked:" + new string(' ', 1100 * 1024) + "{}", "admin", 413];
    }

    [Fact]
    public async Task HostileRequests_EachGetAClearError_AndTheServerKeepsServing()
    {
        var cases = HostileRequests().ToList();
        Assert.True(cases.Count >= 50, $"only {cases.Count} hostile requests");
        await using var server = await TestServer.StartAsync(protocol: o => o.MaxFailedLogins = 1000);
        await server.Dispatcher.EnqueueAsync(new JobRequest("blocker", ["sleep 300"]) { Queue = "pkg_queue" });
        await server.Dispatcher.EnqueueAsync(new JobRequest("queued", ["true"]) { Queue = "pkg_queue" });

        foreach (var c in cases)
        {
            var (verb, path, type, body, auth, status) = ((string)c[0]!, (string)c[1]!, (string)c[2]!, (string)c[3]!, (string)c[4]!, (int)c[5]!);
            using var request = new HttpRequestMessage(new HttpMethod(verb), path);
            if (body.StartsWith("chunked:", StringComparison.Ordinal))
            {
                request.Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(body["chunked:".Length..])));
                request.Headers.TransferEncodingChunked = true;
            }
            else
            {
                request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
            }

            request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(type);
            if (auth.StartsWith('!'))
            {
                request.Headers.TryAddWithoutValidation("Authorization", auth[1..]);
            }
            else
            {
                request.Headers.Authorization = TestServer.Basic(auth);
            }

            using var response = await server.Client.SendAsync(request);
            var label = $"{verb} {path} {type} {(body.Length > 60 ? body[..60] + "…" : body)} {auth}";
            Assert.True(status == (int)response.StatusCode, $"{label}: got {(int)response.StatusCode}, expected {status}");
            if (status == 405)
            {
                Assert.Contains("PUT", response.Content.Headers.Allow);
            }
            else
            {
                var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
                Assert.Equal(status.ToString(System.Globalization.CultureInfo.InvariantCulture), (string?)json["args"]!["code"]);
                Assert.False(string.IsNullOrWhiteSpace((string?)json["args"]!["message"]), label);
            }
        }

        var list = await server.PutAsync("/rpc/dispatcher", """{"action":"list"}""");
        Assert.Equal(HttpStatusCode.OK, list.Status);
        Assert.Equal(["blocker", "queued"], list.Body!["args"]!["jobs"]!["pkg_queue"]!.AsObject().Select(kv => kv.Key));
        await server.Dispatcher.KillAsync(["blocker", "queued"]);
    }

    [Fact]
    public async Task FailedBasicLogins_AreThrottledPerAddress()
    {
        await using var server = await TestServer.StartAsync(protocol: o => o.MaxFailedLogins = 2);
        var first = await SendBasicAsync(server, "admin", "wrong");
        var second = await SendBasicAsync(server, "admin", "wrong");
        var blocked = await SendBasicAsync(server, "admin", "admin-secret");

        Assert.Equal(HttpStatusCode.Unauthorized, first.Status);
        Assert.Equal("Invalid user name or password.", (string?)first.Body!["args"]!["message"]);
        Assert.Equal(HttpStatusCode.Unauthorized, second.Status);
        Assert.Equal(HttpStatusCode.Unauthorized, blocked.Status);
        Assert.Equal("Too Many Authorization Failures - Try again later", (string?)blocked.Body!["args"]!["message"]);
    }

    [Fact]
    public async Task SameRequest_GivesTheSameResultOverHttpAndWebSocket()
    {
        await using var server = await TestServer.StartAsync();
        await server.Dispatcher.EnqueueAsync(new JobRequest("same-1", ["sleep 300"]) { Queue = "pkg_queue" });
        await server.Dispatcher.EnqueueAsync(new JobRequest("same-2", ["sleep 300", "true"]) { Queue = "pkg_queue" });
        await server.Dispatcher.EnqueueAsync(new JobRequest("same-3", ["sleep 300"]));
        await using var ws = await server.ConnectAsync("admin");

        foreach (var args in new[] { """{"action":"list"}""", """{"action":"explode"}""", """{"action":"kill","job_id":1}""", """{"action":"run"}""" })
        {
            var http = await server.PutAsync("/rpc/dispatcher", args);
            var socket = await ws.DispatcherAsync(JsonNode.Parse(args)!.AsObject());
            JsonAssert.Equal(http.Body!["args"], socket["args"]);
        }

        await server.Dispatcher.KillAsync(["same-1", "same-2", "same-3"]);
    }

    private static async Task<(HttpStatusCode Status, JsonNode? Body)> SendBasicAsync(TestServer server, string user, string password)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, "/rpc/dispatcher") { Content = new StringContent("{\"action\":\"list\"}", Encoding.UTF8, "application/json") };
        request.Headers.Authorization = TestServer.Basic(user, password);
        using var response = await server.Client.SendAsync(request);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync()));
    }
}
