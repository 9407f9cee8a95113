using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Dispatcher.Internal;
using Dispatcher.Running;
using Dispatcher.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Dispatcher.Tests.Storage;

/// <summary>Issue 12, items 3 and 4, and issue 18 item 5: a job runs only once durable, and a broken store never hangs a caller.</summary>
public sealed class JournalFaultTests
{
    private static DefaultDispatcher Create(IJobStore store) => new(
        Options.Create(new DispatcherOptions { KillGracePeriod = TimeSpan.FromMilliseconds(500) }),
        JobRunners.CreateDefault(), TimeProvider.System, customStore: new JobStoreRegistration(store));

    [Fact]
    public async Task Enqueue_DoesNotStartTheJob_UntilItsRecordIsDurable()
    {
        var store = new GatedStore();
        await using var dispatcher = Create(store);
        var marker = Path.Combine(Directory.CreateTempSubdirectory("gate-").FullName, "ran");

        var enqueue = dispatcher.EnqueueAsync(new JobRequest("slow", [$"touch {marker}"])).AsTask();
        var record = await store.Appended.Reader.ReadAsync().AsTask().WaitAsync(TestDispatcher.Patience);

        // The record is written but not yet durable: the job waits in its queue, and the caller waits too.
        Assert.Equal("slow", record.Record.JobId);
        Assert.Equal(JobState.Pending, dispatcher.List().Single().State);
        Assert.False(enqueue.IsCompleted);
        Assert.False(File.Exists(marker));

        record.Durable.SetResult();
        await enqueue.WaitAsync(TestDispatcher.Patience);
        Assert.Equal(JobOutcome.Succeeded, (await dispatcher.WaitForCompletionAsync("slow").WaitAsync(TestDispatcher.Patience)).Outcome);
        Assert.True(File.Exists(marker));
    }

    [Fact]
    public async Task Enqueue_WhenItsRecordCannotBeWritten_RejectsTheJob_SaysWhy_AndNeverRunsIt()
    {
        var store = new GatedStore();
        await using var dispatcher = Create(store);
        var marker = Path.Combine(Directory.CreateTempSubdirectory("gate-").FullName, "ran");

        var enqueue = dispatcher.EnqueueAsync(new JobRequest("doomed", [$"touch {marker}"])).AsTask();
        var record = await store.Appended.Reader.ReadAsync().AsTask().WaitAsync(TestDispatcher.Patience);
        record.Durable.SetException(new IOException("The job journal /x could not be written: the storage is full (No space left on device)."));

        var rejected = await Assert.ThrowsAsync<JobRejectedException>(() => enqueue.WaitAsync(TestDispatcher.Patience));
        Assert.Equal(JobRejectionReason.StorageFailed, rejected.Reason);
        Assert.Contains("the storage is full", rejected.Message, StringComparison.Ordinal);
        Assert.Empty(dispatcher.List());
        Assert.Null(dispatcher.GetResult("doomed"));
        Assert.False(File.Exists(marker));

        // The store works again: the next job runs, and the same id may be used again.
        var again = dispatcher.EnqueueAsync(new JobRequest("doomed", [$"touch {marker}"])).AsTask();
        (await store.Appended.Reader.ReadAsync().AsTask().WaitAsync(TestDispatcher.Patience)).Durable.SetResult();
        await again.WaitAsync(TestDispatcher.Patience);
        await dispatcher.WaitForCompletionAsync("doomed").WaitAsync(TestDispatcher.Patience);
        Assert.True(File.Exists(marker));
    }

    [Fact]
    public async Task WriterFault_FailsEveryLaterEnqueueAtOnce_AndHealthSaysFailed()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        await using var t = new TestDispatcher(o => o.DataDirectory = data, data);
        await t.RunAsync("before", "true");
        await t.WaitAsync("before");
        var store = Assert.IsType<FileJobStore>(t.Dispatcher.Store);
        Assert.Equal(JobStoreStatus.Healthy, store.Health.Status);

        // What the 2 GiB compaction buffer did: an exception no write path expects.
        store.OnCommit = () => throw new OverflowException("Array dimensions exceeded supported range.");
        var first = await Assert.ThrowsAsync<JobRejectedException>(() => t.RunAsync("during", "true").WaitAsync(TestDispatcher.Patience));
        Assert.Equal(JobRejectionReason.StorageFailed, first.Reason);

        Assert.Equal(JobStoreStatus.Failed, store.Health.Status);
        Assert.Contains("Array dimensions exceeded", store.Health.Description, StringComparison.Ordinal);
        for (var i = 0; i < 20; i++)
        {
            var later = await Assert.ThrowsAsync<JobRejectedException>(() => t.RunAsync($"after{i}", "true").WaitAsync(TestDispatcher.Patience));
            Assert.Equal(JobRejectionReason.StorageFailed, later.Reason);
            Assert.Contains("stopped after an unexpected error", later.Message, StringComparison.Ordinal);
        }

        Assert.Empty(t.Dispatcher.List());
    }

    [Fact]
    public async Task UseJobStore_PlugsAStoreIn_ThatIsReplayedWhenTheHostStarts()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddDispatcher(o => o.KillGracePeriod = TimeSpan.FromMilliseconds(500)).UseJobStore<ListStore>();
        await using var provider = services.BuildServiceProvider();
        var store = provider.GetRequiredService<ListStore>();
        store.Records.Add(new JobFinishedRecord(new JobResult("old", "no_queue", ["true"], JobOutcome.Succeeded, [], DateTimeOffset.UtcNow, null, DateTimeOffset.UtcNow)));
        Assert.Same(store, provider.GetRequiredService<IJobStore>());

        foreach (var hosted in provider.GetServices<Microsoft.Extensions.Hosting.IHostedService>())
        {
            await hosted.StartAsync(CancellationToken.None);
        }

        var dispatcher = provider.GetRequiredService<IDispatcher>();
        Assert.Equal(JobOutcome.Succeeded, dispatcher.GetResult("old")!.Outcome);
        await dispatcher.EnqueueAsync(new JobRequest("new", ["true"]));
        Assert.Contains(store.Records, r => r is JobEnqueuedRecord { JobId: "new" });
    }

    [Fact]
    public async Task TheDefaultStore_IsResolvable_ForHealthChecks_AndAbsentInMemory()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        var withJournal = new ServiceCollection().AddLogging();
        withJournal.AddDispatcher(o => o.DataDirectory = data);
        await using (var provider = withJournal.BuildServiceProvider())
        {
            var store = provider.GetRequiredService<IJobStore>();
            Assert.IsType<FileJobStore>(store);
            Assert.Same(store, provider.GetRequiredService<DefaultDispatcher>().Store);
            Assert.Equal(JobStoreStatus.Healthy, store.Health.Status);
        }

        var inMemory = new ServiceCollection().AddLogging();
        inMemory.AddDispatcher();
        await using (var provider = inMemory.BuildServiceProvider())
        {
            Assert.Null(provider.GetService<IJobStore>());
        }
    }

    [Fact]
    public void Constructors_DoNoIo()
    {
        var data = Path.Combine(Path.GetTempPath(), "never-created-" + Guid.NewGuid().ToString("N"));
        var store = new FileJobStore(data, flushToDisk: true, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        _ = new DefaultDispatcher(Options.Create(new DispatcherOptions { DataDirectory = data }), JobRunners.CreateDefault(), TimeProvider.System);

        Assert.False(Directory.Exists(data));
        Assert.Equal(JobStoreStatus.Healthy, store.Health.Status);
    }

    /// <summary>A store whose appends complete when the test says so.</summary>
    private sealed class GatedStore : IJobStore
    {
        public System.Threading.Channels.Channel<(JobStoreRecord Record, TaskCompletionSource Durable)> Appended { get; } =
            System.Threading.Channels.Channel.CreateUnbounded<(JobStoreRecord, TaskCompletionSource)>();

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

    /// <summary>A store in a list, as a plugged-in store would keep records in a database.</summary>
    private sealed class ListStore : IJobStore
    {
        public ConcurrentBag<JobStoreRecord> Records { get; } = [];

        public async IAsyncEnumerable<JobStoreRecord> LoadAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            foreach (var r in Records)
            {
                await Task.Yield();
                yield return r;
            }
        }

        public Task AppendAsync(JobStoreRecord record)
        {
            Records.Add(record);
            return Task.CompletedTask;
        }

        public Task RewriteAsync(IReadOnlyList<JobStoreRecord> records) => Task.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
