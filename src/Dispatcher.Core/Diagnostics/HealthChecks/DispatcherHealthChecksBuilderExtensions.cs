using Dispatcher.Diagnostics.HealthChecks;
using Dispatcher.Internal;
using Dispatcher.Running;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the dispatcher's health checks to a host's health checks.</summary>
public static class DispatcherHealthChecksBuilderExtensions
{
    /// <summary>The name of the check on the job journal: unhealthy while journal writes fail (then new jobs are refused).</summary>
    public const string JournalCheckName = "dispatcher-journal";

    /// <summary>The name of the check on the child event loop, the thread that reads and reaps every command on Linux.</summary>
    public const string ChildEventLoopCheckName = "dispatcher-child-event-loop";

    /// <summary>The name of the check for stalled queues: jobs waiting, room to run them, nothing started for a while.</summary>
    public const string StalledQueuesCheckName = "dispatcher-queues";

    /// <summary>
    /// Adds three checks on the dispatcher registered with <c>AddDispatcher</c>: <see cref="JournalCheckName"/>,
    /// <see cref="ChildEventLoopCheckName"/> and <see cref="StalledQueuesCheckName"/>. A failing check reports
    /// <see cref="HealthStatus.Unhealthy"/>. This operation is idempotent.
    /// </summary>
    /// <param name="builder">The health checks builder (from <c>services.AddHealthChecks()</c>).</param>
    /// <param name="stalledQueueThreshold">How long a queue with waiting jobs and room to run them may go without starting one
    /// before it counts as stalled; <see langword="null"/> for 5 minutes.</param>
    /// <param name="tags">Tags for the three checks (to filter them on an endpoint), or <see langword="null"/>.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="stalledQueueThreshold"/> is not positive.</exception>
    public static IHealthChecksBuilder AddDispatcherHealthChecks(this IHealthChecksBuilder builder, TimeSpan? stalledQueueThreshold = null,
        IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var threshold = stalledQueueThreshold ?? TimeSpan.FromMinutes(5);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(threshold, TimeSpan.Zero, nameof(stalledQueueThreshold));
        if (builder.Services.Any(d => d.ServiceType == typeof(DispatcherHealthChecksMarker)))
        {
            return builder;
        }

        builder.Services.AddSingleton<DispatcherHealthChecksMarker>();
        string[] tagList = [.. tags ?? []];
        builder.Add(new HealthCheckRegistration(JournalCheckName,
            sp => new JournalHealthCheck(sp.GetRequiredService<DefaultDispatcher>()), null, tagList));
        builder.Add(new HealthCheckRegistration(ChildEventLoopCheckName,
            sp => new ChildEventLoopHealthCheck(sp.GetRequiredService<IJobRunner>()), null, tagList));
        builder.Add(new HealthCheckRegistration(StalledQueuesCheckName,
            sp => new StalledQueuesHealthCheck(sp.GetRequiredService<DefaultDispatcher>(), sp.GetRequiredService<TimeProvider>(), threshold),
            null, tagList));
        return builder;
    }

    private sealed class DispatcherHealthChecksMarker;
}
