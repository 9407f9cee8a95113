using Dispatcher;
using Microsoft.Extensions.Diagnostics.HealthChecks;

// A user's program: references the packages by id and version, starts a dispatcher with its dashboard and health checks, runs a
// job, prints the result, fetches the dashboard page (embedded in its package) and the health report.
var builder = WebApplication.CreateSlimBuilder(args);
builder.WebHost.UseUrls("http://127.0.0.1:0");
builder.Services.AddDispatcher().AddWebSocketTransport().AddHttpTransport();
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

await app.StopAsync();
return result.Outcome == JobOutcome.Succeeded && page.IsSuccessStatusCode && health.Status == HealthStatus.Healthy ? 0 : 1;
