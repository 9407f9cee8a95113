using System.Net;
using System.Text.Json.Nodes;
using Dispatcher.Events;
using Dispatcher.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Dispatcher.Transports.Tests;

/// <summary>The README's embedding code, compiled and run (keep the two in step).</summary>
public sealed class ReadmeSnippetTests
{
    [Fact]
    public async Task EmbeddingSnippet_ServesBothTransports()
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        builder.Logging.ClearProviders();

        // README: Embedding
        builder.Services.AddDispatcher()                         // binds the "Dispatcher" configuration section
            .AddQueue("builds", maxConcurrency: 2)               // more queues beside no_queue, pkg_queue, iocage_queue
            .UseAuthenticator<MyAuthenticator>()                 // checks user names and passwords: IDispatcherAuthenticator
            .AddEventEnricher<PkgEventEnricher>()                // adds event_system / fields to events of jobs you recognise
            .ConfigureProtocol(o => o.PrincipalAccess =          // or: use the host's own ASP.NET Core authentication
                user => user.IsInRole("admin") ? DispatcherAccess.Full : DispatcherAccess.Read)
            .AddWebSocketTransport()
            .AddHttpTransport();

        var app = builder.Build();
        app.MapDispatcherWebSocket("/");                         // both return IEndpointConventionBuilder:
        app.MapDispatcherHttp();                                 // chain RequireAuthorization(), RequireCors(), RequireRateLimiting()
        await app.StartAsync();
        try
        {
            await using var ws = await WsClient.ConnectAsync(new Uri(app.Urls.First().Replace("http", "ws", StringComparison.Ordinal) + "/"));
            var identify = await ws.RequestAsync("rpc", "identify", "");
            Assert.Equal("server", (string?)identify["args"]!["type"]);
            JsonAssert.IsError(await ws.RequestAsync("rpc", "auth", new JsonObject { ["username"] = "u", ["password"] = "p" }), 401);
            Assert.Contains("builds", app.Services.GetRequiredService<IDispatcher>().Queues);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    [Fact]
    public async Task EngineSnippet_RunsListsKillsAndWatches()
    {
        var collection = new ServiceCollection();
        collection.AddDispatcher();
        await using var services = collection.BuildServiceProvider();

        // README: the engine alone
        var dispatcher = services.GetRequiredService<IDispatcher>();
        using var events = dispatcher.Subscribe();                                              // pending, started, output, finished…
        await dispatcher.EnqueueAsync(new JobRequest("sysadm_pkg_install-{1}", ["sleep 300"]) { Queue = "pkg_queue" });
        foreach (var job in dispatcher.List()) Console.WriteLine($"{job.Queue} {job.Id} {job.State} {job.QueuePosition}");
        await dispatcher.KillAsync(["sysadm_pkg_install-{1}"]);
        JobResult result = await dispatcher.WaitForCompletionAsync("sysadm_pkg_install-{1}");   // outcome, exit codes, output, times

        Assert.Equal(JobOutcome.Killed, result.Outcome);
        var seen = new List<DispatcherEvent>();
        await foreach (var e in events.ReadAllAsync())
        {
            seen.Add(e);
            if (e is JobFinishedEvent)
            {
                break;
            }
        }

        Assert.IsType<JobPendingEvent>(seen[0]);
    }

    private sealed class MyAuthenticator : IDispatcherAuthenticator
    {
        public ValueTask<DispatcherUser?> AuthenticateAsync(string username, string password, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<DispatcherUser?>(/* check them */ null);
    }

    private sealed class PkgEventEnricher : IDispatcherEventEnricher
    {
        public void Enrich(DispatcherEventContext context)
        {
            if (context.JobId.StartsWith("sysadm_pkg", StringComparison.Ordinal))
            {
                context.SetEventSystem("sysadm/pkg");
                context.Args["pkg_log"] = string.Concat(context.Result?.CommandResults.Select(c => c.Output) ?? []);
            }
        }
    }
}
