using Dispatcher.Internal;
using Dispatcher.Running;
using Dispatcher.Storage;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Dispatcher.Diagnostics.HealthChecks;

/// <summary>The job journal: unhealthy while its writes fail (new jobs are refused then), healthy in memory.</summary>
internal sealed class JournalHealthCheck(DefaultDispatcher dispatcher) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (dispatcher.Store is not { } store)
        {
            return Task.FromResult(HealthCheckResult.Healthy("Jobs are kept in memory only."));
        }

        var health = store.Health;
        var data = new Dictionary<string, object> { ["status"] = health.Status.ToString() };
        return Task.FromResult(health.Status switch
        {
            JobStoreStatus.Healthy => HealthCheckResult.Healthy("The job journal is being written.", data),
            JobStoreStatus.Degraded => new HealthCheckResult(context.Registration.FailureStatus,
                $"The last journal write failed; new jobs are refused until a write succeeds. {health.Description}", data: data),
            _ => new HealthCheckResult(context.Registration.FailureStatus,
                $"The job journal stopped; new jobs are refused until the host restarts. {health.Description}", data: data),
        });
    }
}

/// <summary>The thread that reads every command's output and reaps it (the posix_spawn runner's event loop).</summary>
internal sealed class ChildEventLoopHealthCheck(IJobRunner runner) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(runner is not PosixSpawnJobRunner posix ? HealthCheckResult.Healthy($"Not used by the runner ({runner.GetType().Name}).")
            : posix.EventLoopIsAlive switch
            {
                null => HealthCheckResult.Healthy("Not started yet (no command has run)."),
                true => HealthCheckResult.Healthy("The child event loop's thread is running."),
                false => new HealthCheckResult(context.Registration.FailureStatus,
                    "The child event loop's thread has ended: running commands are no longer read or reaped."),
            });
}

/// <summary>
/// A queue is stalled when it is not paused, has jobs that could start (not delayed, not after other jobs) and room to run them,
/// yet has started nothing since its oldest such job was enqueued (or since its last start, if later) for longer than the threshold.
/// </summary>
internal sealed class StalledQueuesHealthCheck(DefaultDispatcher dispatcher, TimeProvider time, TimeSpan threshold) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var stalled = new List<string>();
        var data = new Dictionary<string, object>();
        foreach (var queue in dispatcher.QueueActivity())
        {
            data[queue.Name] = $"{queue.Running} running, {queue.Waiting} waiting";
            if (queue.Paused || queue.Waiting == 0 || (queue.Limit != 0 && queue.Running >= queue.Limit) || queue.OldestWaitingSince is not { } since)
            {
                continue;
            }

            var idleSince = queue.LastStartedAt is { } last && last > since ? last : since;
            if (now - idleSince > threshold)
            {
                stalled.Add($"'{queue.Name}' ({queue.Waiting} waiting, nothing started for {(now - idleSince).TotalSeconds:0} s)");
            }
        }

        return Task.FromResult(stalled.Count == 0
            ? HealthCheckResult.Healthy("No queue is stalled.", data)
            : new HealthCheckResult(context.Registration.FailureStatus, $"Stalled: {string.Join(", ", stalled)}.", data: data));
    }
}
