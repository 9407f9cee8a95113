using Dispatcher;

// A user's program: references the three packages by id and version, starts a dispatcher, runs a job, prints the result.
var builder = WebApplication.CreateSlimBuilder(args);
builder.WebHost.UseUrls("http://127.0.0.1:0");
builder.Services.AddDispatcher().AddWebSocketTransport().AddHttpTransport();
var app = builder.Build();
app.MapDispatcherWebSocket("/");
app.MapDispatcherHttp();
await app.StartAsync();

var dispatcher = app.Services.GetRequiredService<IDispatcher>();
await dispatcher.EnqueueAsync(new JobRequest("consumer", ["echo hello from the package"]));
var result = await dispatcher.WaitForCompletionAsync("consumer").WaitAsync(TimeSpan.FromSeconds(30));
Console.WriteLine($"{result.Id}: {result.Outcome}, exit {result.ExitCode}, output: {result.CommandResults[0].Output.Trim()}");

await app.StopAsync();
return result.Outcome == JobOutcome.Succeeded ? 0 : 1;
