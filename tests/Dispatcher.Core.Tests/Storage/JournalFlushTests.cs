using System.Text;
using Dispatcher.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dispatcher.Tests.Storage;

/// <summary>
/// Issue 19, item 2: a serial queue does not wait on the disk for each job. An acknowledged record (an enqueue) is flushed
/// before its task completes; a job's start, processes and end are written at once (a crash of the host keeps them) and
/// flushed with the next acknowledged record, or <see cref="FileJobStore.FlushDelay"/> later.
/// </summary>
public sealed class JournalFlushTests
{
    [Fact]
    public async Task SerialQueue_CostsNoFlushPerJob_AndEveryStartAndEndIsWrittenAtOnce()
    {
        var data = Directory.CreateTempSubdirectory("flush-").FullName;
        await using var t = new TestDispatcher(o => o.DataDirectory = data, data);
        var store = Assert.IsType<FileJobStore>(t.Dispatcher.Store);
        store.FlushDelay = TimeSpan.FromHours(1);

        // The start compacts the journal, and that rewrite's own flush (which Flushes does not count) acknowledges the records
        // that arrive meanwhile: under load all 20 enqueues below once did (CI: "the acknowledged enqueues were flushed").
        // The writer takes a queued rewrite before any flush, so once a first enqueue is acknowledged the rewrite is done.
        await t.RunAsync("first", "true");
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("first")).Outcome);
        var before = store.Flushes;
        var ids = Enumerable.Range(0, 20).Select(i => $"serial{i}").ToArray();

        await Task.WhenAll(ids.Select(id => t.RunInAsync(DispatcherQueues.PkgQueue, id, "true"))).WaitAsync(TestDispatcher.Patience);
        var flushedForTheEnqueues = store.Flushes;
        Assert.True(flushedForTheEnqueues > before, "the acknowledged enqueues were flushed");
        foreach (var id in ids)
        {
            Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync(id)).Outcome);
        }

        // Every job's end is in the file, where a crash of the host (kill -9) cannot take it...
        await WaitUntilAsync(() => ids.All(id => Journal(data).Contains($"\"Kind\":\"finished\",\"Id\":\"{id}\"", StringComparison.Ordinal)));

        // ...and 20 starts, 20 processes and 20 ends cost no flush of their own (before: about one flush per job).
        Assert.Equal(flushedForTheEnqueues, store.Flushes);
    }

    [Fact]
    public async Task WrittenRecord_IsFlushedByItself_WithinTheDelay()
    {
        var dir = Directory.CreateTempSubdirectory("flush-").FullName;
        var store = new FileJobStore(dir, flushToDisk: true, NullLogger.Instance) { FlushDelay = TimeSpan.FromMilliseconds(50) };
        await using (store)
        {
            await store.AppendAsync(new JobStartedRecord("a", DateTimeOffset.UtcNow)).WaitAsync(TestDispatcher.Patience);
            Assert.Equal(1, store.Flushes);
        }
    }

    [Fact]
    public async Task WrittenRecord_WaitsForItsFlush_AndAnAcknowledgedRecordTakesItAlong()
    {
        var dir = Directory.CreateTempSubdirectory("flush-").FullName;
        var store = new FileJobStore(dir, flushToDisk: true, NullLogger.Instance) { FlushDelay = TimeSpan.FromHours(1) };
        await using (store)
        {
            var started = store.AppendAsync(new JobStartedRecord("a", DateTimeOffset.UtcNow));
            await WaitUntilAsync(() => Journal(dir).Contains("\"Id\":\"a\"", StringComparison.Ordinal));
            Assert.False(started.IsCompleted, "a written record's task completes only once it is flushed");
            Assert.Equal(0, store.Flushes);

            await store.AppendAsync(new JobEnqueuedRecord(new JobRequest("b", ["true"]), DateTimeOffset.UtcNow)).WaitAsync(TestDispatcher.Patience);
            Assert.True(started.IsCompletedSuccessfully);
            Assert.Equal(1, store.Flushes);
        }
    }

    [Fact]
    public async Task Dispose_FlushesWhatWaits()
    {
        var dir = Directory.CreateTempSubdirectory("flush-").FullName;
        var store = new FileJobStore(dir, flushToDisk: true, NullLogger.Instance) { FlushDelay = TimeSpan.FromHours(1) };
        var finished = store.AppendAsync(new JobStartedRecord("a", DateTimeOffset.UtcNow));
        await WaitUntilAsync(() => Journal(dir).Contains("\"Id\":\"a\"", StringComparison.Ordinal));
        await store.DisposeAsync();
        await finished.WaitAsync(TestDispatcher.Patience);
        Assert.Equal(1, store.Flushes);
    }

    [Fact]
    public async Task EndRecord_ThatCouldNotBeWritten_IsPutBackWithTheNextRecord_AndSurvivesARestart()
    {
        // A job's start, process and end records are written without a task to wait on: a failed write must still reach the
        // dispatcher, which rewrites the journal from its own state at its next record once the storage takes records again.
        var data = Directory.CreateTempSubdirectory("flush-").FullName;
        var first = new TestDispatcher(o => o.DataDirectory = data, data) { KeepDirectory = true };
        var store = Assert.IsType<FileJobStore>(first.Dispatcher.Store);
        var failing = 0;
        store.OnCommit = () =>
        {
            if (Volatile.Read(ref failing) == 1)
            {
                throw new IOException("No space left on device");
            }
        };

        var release = first.PathOf("release");
        await first.RunAsync("a", $"sh -c \"while [ ! -e {release} ]; do sleep 0.01; done; echo done-a\"");
        await ProcessProbe.WaitUntilAsync(() => Journal(data).Contains("\"Kind\":\"started\",\"Id\":\"a\"", StringComparison.Ordinal), "a started");
        Volatile.Write(ref failing, 1);
        await File.WriteAllTextAsync(release, string.Empty);
        Assert.Equal(JobOutcome.Succeeded, (await first.WaitAsync("a")).Outcome);
        Assert.DoesNotContain("\"Kind\":\"finished\",\"Id\":\"a\"", Journal(data), StringComparison.Ordinal);
        Assert.Equal(JobStoreStatus.Degraded, store.Health.Status);

        Volatile.Write(ref failing, 0);
        await first.RunAsync("b", "true");
        Assert.Equal(JobOutcome.Succeeded, (await first.WaitAsync("b")).Outcome);
        await ProcessProbe.WaitUntilAsync(() => Journal(data).Contains("\"Kind\":\"finished\",\"Id\":\"a\"", StringComparison.Ordinal), "a's end was put back");
        await first.DisposeAsync();

        await using var second = new TestDispatcher(o => o.DataDirectory = data, data);
        await second.Dispatcher.StartAsync(CancellationToken.None);
        var a = second.Dispatcher.GetResult("a");
        Assert.NotNull(a);
        Assert.Equal(JobOutcome.Succeeded, a.Outcome);
        Assert.Contains("done-a", a.CommandResults[0].Output, StringComparison.Ordinal);
    }

    private static string Journal(string dir)
    {
        var path = Path.Combine(dir, FileJobStore.FileName);
        if (!File.Exists(path))
        {
            return string.Empty;
        }

        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(file, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TestDispatcher.Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(10);
        }
    }
}
