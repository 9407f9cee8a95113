using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Dispatcher;
using Dispatcher.Protocol;
using Microsoft.Extensions.Diagnostics.HealthChecks;

// A user's program: references the packages by id and version, starts a dispatcher with its dashboard and health checks, runs a
// job, prints the result, fetches the dashboard page (embedded in its package) and the health report; then, as an embedding
// host, adds its own class and event channel through the public API only and uses them over a WebSocket.
var builder = WebApplication.CreateSlimBuilder(args);
builder.WebHost.UseUrls("http://127.0.0.1:0");
builder.Services.AddDispatcher()
    .AddWebSocketTransport()
    .AddHttpTransport()
    .UseAuthenticator<OneUser>()
    .AddProtocolHandler<Greeter>("acme", "greeter", DispatcherAccess.Read)
    .AddEventChannel("acme-news", DispatcherAccess.Read, replayLast: true);
builder.Services.AddDispatcherDashboard();
builder.Services.AddHealthChecks().AddDispatcherHealthChecks();
var app = builder.Build();
app.MapDispatcherWebSocket("/");
app.MapDispatcherHttp();
app.MapDispatcherDashboard("/dashboard");
await app.StartAsync();

var dispatcher = app.Services.GetRequiredService<IDispatcher>();
await dispatcher.EnqueueAsync(new JobRequest("consumer", ["echo hello from the package"]));
var result = await dispatcher.WaitForCompletionAsync("consumer").WaitAsync(TimeSpan.FromSeconds(30));
Console.WriteLine($"{result.Id}: {result.Outcome}, exit {result.ExitCode}, output: {result.CommandResults[0].Output.Trim()}");

using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
using var page = await http.GetAsync("/dashboard");
Console.WriteLine($"dashboard: {(int)page.StatusCode} {page.Content.Headers.ContentType?.MediaType}");
var health = await app.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
Console.WriteLine($"health: {health.Status}");

// The host's class and channel, through the packed packages.
app.Services.GetRequiredService<IProtocolEventPublisher>().Publish("acme-news", new JsonObject { ["headline"] = "replayed" });
using var ws = new ClientWebSocket();
await ws.ConnectAsync(new Uri(app.Urls.First().Replace("http://", "ws://", StringComparison.Ordinal) + "/"), CancellationToken.None);
await SendAsync("""{"namespace":"rpc","name":"auth","id":"a","args":{"username":"consumer","password":"consumer-pw"}}""");
await ReceiveAsync();
await SendAsync("""{"namespace":"acme","name":"greeter","id":"g","args":{"action":"greet"}}""");
var greeting = await ReceiveAsync();
await SendAsync("""{"namespace":"rpc","name":"query","id":"q","args":""}""");
var query = await ReceiveAsync();
await SendAsync("""{"namespace":"events","name":"subscribe","id":"s","args":["acme-news"]}""");
var replay = await ReceiveAsync();
var subscribed = await ReceiveAsync();
var ok = (string?)greeting["args"]?["hello"] == "consumer" && (string?)query["args"]?["acme/greeter"] == "read/write"
    && (string?)replay["name"] == "acme-news" && (string?)replay["args"]?["headline"] == "replayed"
    && (string?)subscribed["args"]?["subscribe"] == "acme-news";
Console.WriteLine(ok ? "host class and channel: ok" : $"host class and channel: FAILED {greeting} {query} {replay} {subscribed}");
await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);

await app.StopAsync();
return result.Outcome == JobOutcome.Succeeded && ok && page.IsSuccessStatusCode && health.Status == HealthStatus.Healthy ? 0 : 1;

async Task SendAsync(string text) => await ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

async Task<JsonNode> ReceiveAsync()
{
    var buffer = new byte[64 * 1024];
    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
    var r = await ws.ReceiveAsync(buffer, cts.Token);
    return JsonNode.Parse(buffer.AsSpan(0, r.Count))!;
}

/// <summary>The host's own class: greets the session's user.</summary>
internal sealed class Greeter : IProtocolHandler
{
    public ValueTask<ProtocolResult> HandleAsync(ProtocolRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(request.Action == "greet"
            ? ProtocolResult.Ok(new JsonObject { ["hello"] = request.Connection.User?.Name })
            : ProtocolResult.Error(ProtocolErrorCode.BadRequest, "acme/greeter offers the action greet."));
}

internal sealed class OneUser : IDispatcherAuthenticator
{
    public ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(username == "consumer" && password == "consumer-pw" ? new DispatcherUser(username, DispatcherAccess.Full) : null);
}
