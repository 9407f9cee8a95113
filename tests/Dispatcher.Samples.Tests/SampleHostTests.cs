using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests;

public sealed class SampleHostTests
{
    private static Dictionary<string, string> Users => new()
    {
        ["Users__0__Name"] = "e2e",
        ["Users__0__Password"] = "e2e-pass-7Q",
        ["Users__0__FullAccess"] = "true",
    };

    [Fact]
    public async Task SampleHost_RunsJobsOverWebSocketAndRest_AndStopsCleanly()
    {
        var port = SampleProcess.FreePort();
        await using var host = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{port}"], Users);
        await host.WaitForOutputAsync("Press Ctrl+C to stop.");
        Assert.Contains($"listening on http://127.0.0.1:{port}", host.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("created full-access user", host.Output, StringComparison.Ordinal);

        // WebSocket: identify, authenticate, subscribe, run, see it finish.
        using var ws = new ClientWebSocket();
        await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/"), CancellationToken.None);
        Assert.Equal("server", (string?)(await RequestAsync(ws, """{"namespace":"rpc","name":"identify","id":"i","args":""}"""))["args"]!["type"]);
        await RequestAsync(ws, """{"namespace":"rpc","name":"auth","id":"a","args":{"username":"e2e","password":"e2e-pass-7Q"}}""");
        await RequestAsync(ws, """{"namespace":"events","name":"subscribe","id":"s","args":"dispatcher"}""");
        var run = await RequestAsync(ws, """{"namespace":"rpc","name":"dispatcher","id":"r","args":{"action":"run","e2e-ws":"echo over websocket"}}""");
        Assert.Equal("e2e-ws", (string?)run["args"]!["started"]![0]);
        var finished = await ReceiveAsync(ws, f => (string?)f["args"]?["state"] == "finished" && (string?)f["args"]?["process_id"] == "e2e-ws");
        // The sample host sends what sysadm clients expect: an unrecognised job's finished event is its flat log.
        Assert.Equal("over websocket\n", (string?)finished["args"]!["echo over websocket"]);

        // REST: run, then see its finished event on the subscribed WebSocket, and list.
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("e2e:e2e-pass-7Q")));
        var response = await http.PutAsync("/rpc/dispatcher", new StringContent("""{"action":"run","e2e-rest":"echo over rest"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var restFinished = await ReceiveAsync(ws, f => (string?)f["args"]?["state"] == "finished" && (string?)f["args"]?["process_id"] == "e2e-rest");
        Assert.Equal("0", (string?)restFinished["args"]!["return_codes/echo over rest"]);
        var list = await http.PutAsync("/rpc/dispatcher", new StringContent("""{"action":"list"}""", Encoding.UTF8, "application/json"));
        Assert.Equal("""{"args":{"jobs":{}}}""", await list.Content.ReadAsStringAsync());
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);

        // Stop it as a service manager would.
        host.Terminate();
        Assert.Equal(0, await host.WaitForExitAsync());
        Assert.Contains("Job e2e-rest finished", host.Output, StringComparison.Ordinal);
        Assert.Contains("user=e2e rpc/dispatcher action=run -> 200", host.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("e2e-pass-7Q", host.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SampleHost_WithoutUsers_PrintsAGeneratedAdminPasswordOnce()
    {
        var port = SampleProcess.FreePort();
        await using var host = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{port}"]);
        await host.WaitForOutputAsync("Press Ctrl+C to stop.");

        var line = host.Output.Split('\n').Single(l => l.Contains("created full-access user 'admin'", StringComparison.Ordinal));
        var password = line.Split('\'')[3];
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"admin:{password}")));
        var list = await http.PutAsync("/rpc/dispatcher", new StringContent("""{"action":"list"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        host.Terminate();
        Assert.Equal(0, await host.WaitForExitAsync());
        // Printed once, never logged.
        Assert.Equal(2, host.Output.Split(password).Length);
    }

    [Fact]
    public async Task SampleHost_BadOptionValue_EndsStartupWithOneClearMessage()
    {
        await using var host = SampleProcess.Start("Dispatcher.SampleHost",
            ["--urls", $"http://127.0.0.1:{SampleProcess.FreePort()}", "--Dispatcher:KillGracePeriod=-00:00:01", "--Dispatcher:Queues:pkg_queue:MaxConcurrency=-3"]);

        Assert.Equal(2, await host.WaitForExitAsync());
        Assert.Contains("Invalid configuration: ", host.Output, StringComparison.Ordinal);
        Assert.Contains("Dispatcher:KillGracePeriod is -00:00:01; it must be between 00:00:00 and 00:10:00.", host.Output, StringComparison.Ordinal);
        Assert.Contains("Dispatcher:Queues:pkg_queue:MaxConcurrency is -3", host.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", host.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SampleHost_UnparsableValueOrBusyPort_EndsStartupWithOneClearMessage()
    {
        await using (var bad = SampleProcess.Start("Dispatcher.SampleHost",
            ["--urls", $"http://127.0.0.1:{SampleProcess.FreePort()}", "--Dispatcher:KillGracePeriod=soon"]))
        {
            Assert.Equal(2, await bad.WaitForExitAsync());
            Assert.Contains("cannot start", bad.Output, StringComparison.Ordinal);
            Assert.Contains("KillGracePeriod", bad.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", bad.Output, StringComparison.Ordinal);
        }

        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var busy = ((IPEndPoint)listener.LocalEndpoint).Port;
        await using var host = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{busy}"]);
        Assert.Equal(2, await host.WaitForExitAsync());
        Assert.Contains("cannot start", host.Output, StringComparison.Ordinal);
        Assert.Contains("address already in use", host.Output, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("   at ", host.Output, StringComparison.Ordinal);
    }

    private static async Task<JsonNode> RequestAsync(ClientWebSocket ws, string request)
    {
        var id = (string?)JsonNode.Parse(request)!["id"];
        await ws.SendAsync(Encoding.UTF8.GetBytes(request), WebSocketMessageType.Text, true, CancellationToken.None);
        var reply = await ReceiveAsync(ws, f => (string?)f["id"] == id);
        Assert.Equal("response", (string?)reply["name"]);
        return reply;
    }

    private static async Task<JsonNode> ReceiveAsync(ClientWebSocket ws, Func<JsonNode, bool> match)
    {
        using var cts = new CancellationTokenSource(SampleProcess.Patience);
        var buffer = new byte[64 * 1024];
        while (true)
        {
            using var message = new MemoryStream();
            WebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(buffer, cts.Token);
                message.Write(buffer, 0, result.Count);
            }
            while (!result.EndOfMessage);

            var frame = JsonNode.Parse(message.ToArray())!;
            if (match(frame))
            {
                return frame;
            }
        }
    }
}
