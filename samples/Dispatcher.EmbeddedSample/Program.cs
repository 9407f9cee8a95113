using Dispatcher;
using Dispatcher.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// How a sysadm-style server embeds Dispatcher.Core: no transport, just the engine, its events and an enricher.
var builder = Host.CreateApplicationBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Services.AddDispatcher(o => o.KillGracePeriod = TimeSpan.FromSeconds(2))
    .AddEventEnricher<PkgEventEnricher>();
builder.Services.AddHostedService<Demo>();
await builder.Build().RunAsync();

/// <summary>Marks package jobs the way the sysadm server did: event_system "sysadm/pkg" and the job's log in "pkg_log".</summary>
internal sealed class PkgEventEnricher : IDispatcherEventEnricher
{
    public void Enrich(DispatcherEventContext context)
    {
        if (!context.JobId.StartsWith("sysadm_pkg", StringComparison.Ordinal))
        {
            return;
        }

        context.SetEventSystem("sysadm/pkg");
        var log = context.Result is { } result
            ? string.Concat(result.CommandResults.Select(c => c.Output))
            : string.Concat(context.Commands.Select(c => context.Args["process_details"]?[c]?.GetValue<string>() ?? string.Empty));
        context.Args["pkg_log"] = log;
    }
}

/// <summary>Queues a package job and a second one behind it, prints the events, lists, kills the second, and stops.</summary>
internal sealed class Demo(IDispatcher dispatcher, DispatcherEventFeed feed, IHostApplicationLifetime lifetime) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var events = feed.Listen(e => Console.WriteLine($"event: {e.Frame.Length} bytes {System.Text.Encoding.UTF8.GetString(e.Frame.Span)}"));

        var install = $"sysadm_pkg_install-{{{Guid.NewGuid()}}}";
        var second = $"sysadm_pkg_install-{{{Guid.NewGuid()}}}";
        await dispatcher.EnqueueAsync(new JobRequest(install, ["sh -c \"echo Installing misc/pcbsd-meta-mate; sleep 1; echo done\""]) { Queue = DispatcherQueues.PkgQueue }, stoppingToken);
        await dispatcher.EnqueueAsync(new JobRequest(second, ["sh -c \"echo never printed\""]) { Queue = DispatcherQueues.PkgQueue }, stoppingToken);

        foreach (var job in dispatcher.List())
        {
            Console.WriteLine($"list: {job.Queue} {job.Id} {job.State} position {job.QueuePosition}");
        }

        var killed = await dispatcher.KillAsync([second], stoppingToken);
        Console.WriteLine($"killed: {string.Join(", ", killed)}");

        var result = await dispatcher.WaitForCompletionAsync(install, stoppingToken);
        Console.WriteLine($"result: {result.Id} {result.Outcome} exit {result.ExitCode}: {result.CommandResults[0].Output.Trim().Replace('\n', '|')}");

        // Let the last event frames print, then stop the host.
        await Task.Delay(200, stoppingToken);
        lifetime.StopApplication();
    }
}
