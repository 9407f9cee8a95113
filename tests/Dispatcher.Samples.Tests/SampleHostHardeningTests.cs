using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Dispatcher.Samples.Tests;

/// <summary>Issue 12 items checked on the real sample host process: the job environment (11) and stopping (10).</summary>
public sealed class SampleHostHardeningTests
{
    private const string Password = "adminpw-Zq81";
    private const string OtherSecret = "tok-Jr55-secret";

    private static Dictionary<string, string> Environment => new()
    {
        ["Users__0__Name"] = "admin",
        ["Users__0__Password"] = Password,
        ["Users__0__FullAccess"] = "true",
        ["Users__1__Name"] = "viewer",
        ["Users__1__Password"] = "viewerpw-Pp02",
        ["DEPLOY_API_TOKEN"] = OtherSecret,
        ["HW12_VISIBLE"] = "visible-value",
    };

    [Fact]
    public async Task SampleHost_JobRunningEnv_ShowsNoHostSecretInHistory()
    {
        var port = SampleProcess.FreePort();
        await using var host = SampleProcess.Start("Dispatcher.SampleHost", ["--urls", $"http://127.0.0.1:{port}"], Environment);
        await host.WaitForOutputAsync("Press Ctrl+C to stop.");
        using var admin = Client(port, "admin", Password);
        using var viewer = Client(port, "viewer", "viewerpw-Pp02");

        var run = await admin.PutAsync("/rpc/dispatcher", Json("""{"action":"run","show-env":"env"}"""));
        Assert.Equal(HttpStatusCode.OK, run.StatusCode);

        // The viewer reads the output through history, as the attacker did.
        string? output = null;
        var deadline = DateTime.UtcNow + SampleProcess.Patience;
        while (output is null)
        {
            Assert.True(DateTime.UtcNow < deadline, "the job did not finish");
            var history = JsonNode.Parse(await (await viewer.PutAsync("/rpc/dispatcher", Json("""{"action":"history","job_id":"show-env"}"""))).Content.ReadAsStringAsync())!;
            output = (string?)history["args"]!["history"]!.AsArray().FirstOrDefault()?["env"];
            if (output is null)
            {
                await Task.Delay(100);
            }
        }

        Assert.Contains("HW12_VISIBLE=visible-value", output, StringComparison.Ordinal);
        Assert.Contains("PATH=", output, StringComparison.Ordinal);
        Assert.DoesNotContain(Password, output, StringComparison.Ordinal);
        Assert.DoesNotContain("viewerpw-Pp02", output, StringComparison.Ordinal);
        Assert.DoesNotContain(OtherSecret, output, StringComparison.Ordinal);
        Assert.DoesNotContain("Users__", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SampleHost_Sigterm_WithAClientConnectedAndAJobRunning_Closes1001AndExitsWithinTheKillGracePeriod()
    {
        var port = SampleProcess.FreePort();
        await using var host = SampleProcess.Start("Dispatcher.SampleHost",
            ["--urls", $"http://127.0.0.1:{port}", "--Dispatcher:KillGracePeriod=00:00:01"], Environment);
        await host.WaitForOutputAsync("Press Ctrl+C to stop.");

        using var ws = new ClientWebSocket();
        await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/"), CancellationToken.None);
        await SendAsync(ws, """{"namespace":"rpc","name":"auth","id":"a","args":{"username":"admin","password":"PASSWORD"}}""".Replace("PASSWORD", Password, StringComparison.Ordinal));
        await ReceiveAsync(ws, f => (string?)f["id"] == "a");
        await SendAsync(ws, """{"namespace":"events","name":"subscribe","id":"s","args":"dispatcher"}""");
        await ReceiveAsync(ws, f => (string?)f["id"] == "s");
        await SendAsync(ws, """{"namespace":"rpc","name":"dispatcher","id":"r","args":{"action":"run","long":"sleep 300"}}""");
        await ReceiveAsync(ws, f => (string?)f["args"]?["state"] == "running" && (string?)f["args"]?["process_id"] == "long");

        var clock = Stopwatch.StartNew();
        host.Terminate();

        // The connected client hears 1001 at once (without it, Kestrel waited 30 s for the socket to end).
        using var cts = new CancellationTokenSource(SampleProcess.Patience);
        while (await ReceiveOrCloseAsync(ws, cts.Token) is not null)
        {
        }

        var closedAfter = clock.Elapsed;
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, ws.CloseStatus);
        Assert.Equal(0, await host.WaitForExitAsync());
        var exitedAfter = clock.Elapsed;

        // KillGracePeriod (1 s) + 2 s is the target; the bound here leaves room for a loaded machine and stays well under
        // both the 30 s it took before and Docker's 10 s stop timeout.
        Assert.True(exitedAfter < TimeSpan.FromSeconds(9), $"closed after {closedAfter.TotalSeconds:F1} s, exited after {exitedAfter.TotalSeconds:F1} s\n{host.Output}");
        Console.WriteLine($"SIGTERM: WebSocket closed 1001 after {closedAfter.TotalMilliseconds:F0} ms, host exited after {exitedAfter.TotalMilliseconds:F0} ms");
        Assert.Contains("Job long", host.Output, StringComparison.Ordinal);
    }

    private static HttpClient Client(int port, string user, string password)
    {
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = SampleProcess.Patience };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        return http;
    }

    private static StringContent Json(string text) => new(text, Encoding.UTF8, "application/json");

    private static Task SendAsync(ClientWebSocket ws, string text) =>
        ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    private static async Task<JsonNode> ReceiveAsync(ClientWebSocket ws, Func<JsonNode, bool> match)
    {
        using var cts = new CancellationTokenSource(SampleProcess.Patience);
        while (true)
        {
            var text = await ReceiveOrCloseAsync(ws, cts.Token) ?? throw new WebSocketException($"closed: {ws.CloseStatus} {ws.CloseStatusDescription}");
            var frame = JsonNode.Parse(text)!;
            if (match(frame))
            {
                return frame;
            }
        }
    }

    /// <summary>One message, or null once the server closed (the close is answered).</summary>
    private static async Task<string?> ReceiveOrCloseAsync(ClientWebSocket ws, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        while (true)
        {
            var result = await ws.ReceiveAsync(buffer, cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                if (ws.State == WebSocketState.CloseReceived)
                {
                    await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                }

                return null;
            }

            message.Write(buffer, 0, result.Count);
            if (result.EndOfMessage)
            {
                return Encoding.UTF8.GetString(message.ToArray());
            }
        }
    }
}
