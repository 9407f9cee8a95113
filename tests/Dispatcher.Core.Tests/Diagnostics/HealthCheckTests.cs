using System.Runtime.CompilerServices;
using Dispatcher.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Dispatcher.Tests.Diagnostics;

/// <summary>The checks added by <c>AddDispatcherHealthChecks</c>, run through the host's <see cref="HealthCheckService"/>.</summary>
public sealed class HealthCheckTests
{
    private const string Journal = DispatcherHealthChecksBuilderExtensions.JournalCheckName;
    private const string Queues = DispatcherHealthChecksBuilderExtensions.StalledQueuesCheckName;
    private const string EventLoop = DispatcherHealthChecksBuilderExtensions.ChildEventLoopCheckName;

    [Fact]
    public async Task AQueueWithRoomThatStartsNothing_IsStalled_AfterTheThreshold_AndABusyQueueIsNot()
    {
        var clock = new ManualClock();
        await using var provider = await StartAsync(clock);
        var store = provider.GetRequiredService<GatedStore>();
        var health = provider.GetRequiredService<HealthCheckService>();
        var dispatcher = provider.GetRequiredService<IDispatcher>();

        // The journal does not make the job durable: it waits at the head of a queue with room to run it.
        var first = dispatcher.EnqueueAsync(new JobRequest("first", ["sleep 30"]) { Queue = "one" }).AsTask();
        var firstRecord = await store.Appended.Reader.ReadAsync().AsTask().WaitAsync(TestDispatcher.Patience);
        Assert.Equal(HealthStatus.Healthy, (await health.CheckHealthAsync()).Entries[Queues].Status);

        clock.Advance(TimeSpan.FromMinutes(2));
        var stalled = (await health.CheckHealthAsync()).Entries[Queues];
        Assert.Equal(HealthStatus.Unhealthy, stalled.Status);
        Assert.Contains("'one' (1 waiting, nothing started for 120 s)", stalled.Description, StringComparison.Ordinal);

        // Once it starts, the queue is busy (at its limit of one): a job waiting behind it is not a stall, however long it waits.
        firstRecord.Durable.SetResult();
        await first.WaitAsync(TestDispatcher.Patience);
        var second = dispatcher.EnqueueAsync(new JobRequest("second", ["true"]) { Queue = "one" }).AsTask();
        (await store.Appended.Reader.ReadAsync().AsTask().WaitAsync(TestDispatcher.Patience)).Durable.SetResult();
        await second.WaitAsync(TestDispatcher.Patience);
        Assert.Equal(JobState.Running, dispatcher.GetJob("first")!.State);
        Assert.Equal(JobState.Pending, dispatcher.GetJob("second")!.State);
        clock.Advance(TimeSpan.FromHours(1));
        var report = await health.CheckHealthAsync();
        Assert.Equal(HealthStatus.Healthy, report.Entries[Queues].Status);
        Assert.Equal("1 running, 1 waiting", report.Entries[Queues].Data["one"]);

        // The posix_spawn runner's event loop (on Linux) read and reaped the first command's start: its thread is alive.
        Assert.Equal(HealthStatus.Healthy, report.Entries[EventLoop].Status);
        await dispatcher.KillAsync("first");
    }

    [Fact]
    public async Task TheJournalCheck_FollowsTheStore_UnhealthyWhileWritesFail()
    {
        await using var provider = await StartAsync(new ManualClock());
        var store = provider.GetRequiredService<GatedStore>();
        var health = provider.GetRequiredService<HealthCheckService>();
        Assert.Equal(HealthStatus.Healthy, (await health.CheckHealthAsync()).Entries[Journal].Status);

        store.Health = new JobStoreHealth(JobStoreStatus.Degraded, "No space left on device: /data/journal.jsonl");
        var degraded = (await health.CheckHealthAsync()).Entries[Journal];
        Assert.Equal(HealthStatus.Unhealthy, degraded.Status);
        Assert.Contains("new jobs are refused until a write succeeds", degraded.Description, StringComparison.Ordinal);
        Assert.Contains("No space left on device", degraded.Description, StringComparison.Ordinal);

        store.Health = new JobStoreHealth(JobStoreStatus.Failed, "stopped");
        Assert.Equal(HealthStatus.Unhealthy, (await health.CheckHealthAsync()).Status);

        store.Health = JobStoreHealth.Healthy;
        Assert.Equal(HealthStatus.Healthy, (await health.CheckHealthAsync()).Entries[Journal].Status);
    }

    [Fact]
    public async Task InMemory_TheJournalCheckIsHealthy_AndAddingTheChecksTwiceAddsThemOnce()
    {
        var services = new ServiceCollection().AddLogging();
        services.AddDispatcher();
        services.AddHealthChecks().AddDispatcherHealthChecks().AddDispatcherHealthChecks(TimeSpan.FromSeconds(1));
        await using var provider = services.BuildServiceProvider();
        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        Assert.Equal([EventLoop, Journal, Queues], report.Entries.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("Jobs are kept in memory only.", report.Entries[Journal].Description);
        Assert.Throws<ArgumentOutOfRangeException>(() => services.AddHealthChecks().AddDispatcherHealthChecks(TimeSpan.Zero));
    }

    private static async Task<ServiceProvider> StartAsync(ManualClock clock)
    {
        var services = new ServiceCollection().AddLogging();
        services.AddSingleton<TimeProvider>(clock);
        services.AddDispatcher(o => o.KillGracePeriod = TimeSpan.FromMilliseconds(500)).AddQueue("one", 1).UseJobStore<GatedStore>();
        services.AddHealthChecks().AddDispatcherHealthChecks(TimeSpan.FromMinutes(1));
        var provider = services.BuildServiceProvider();
        foreach (var hosted in provider.GetServices<IHostedService>())
        {
            await hosted.StartAsync(CancellationToken.None);
        }

        return provider;
    }

    /// <summary>A clock that moves only when told (the dispatcher's timers are not used by these tests: no job has a timeout).</summary>
    private sealed class ManualClock : TimeProvider
    {
        private DateTimeOffset _now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => _now;

        public void Advance(TimeSpan by) => _now += by;
    }

    /// <summary>A store whose enqueue records become durable when the test says so, with a health the test sets.</summary>
    private sealed class GatedStore : IJobStore
    {
        public System.Threading.Channels.Channel<(JobStoreRecord Record, TaskCompletionSource Durable)> Appended { get; } =
            System.Threading.Channels.Channel.CreateUnbounded<(JobStoreRecord, TaskCompletionSource)>();

        public JobStoreHealth Health { get; set; } = JobStoreHealth.Healthy;

        public async IAsyncEnumerable<JobStoreRecord> LoadAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            await Task.CompletedTask;
            yield break;
        }

        public Task AppendAsync(JobStoreRecord record)
        {
            if (record is not JobEnqueuedRecord)
            {
                return Task.CompletedTask;
            }

            var durable = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Appended.Writer.TryWrite((record, durable));
            return durable.Task;
        }

        public Task RewriteAsync(IReadOnlyList<JobStoreRecord> records) => Task.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
