using Dispatcher.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Dispatcher.Tests.Storage;

/// <summary>
/// A job's start record is in the journal file before its process is spawned, whatever the journal's writer is doing: a kill -9
/// of the host right after the spawn then finds the start on restart, and the job does not run a second time.
/// </summary>
public sealed class JournalStartRecordTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task StartRecord_IsInTheFile_BeforeTheJobsProcessRuns_EvenWithTheWriterHeldUp(bool flushToDisk)
    {
        var data = Directory.CreateTempSubdirectory("start-record-").FullName;
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var t = new TestDispatcher(o =>
        {
            o.DataDirectory = data;
            o.FlushToDisk = flushToDisk;
        }, data, time: time);
        var store = Assert.IsType<FileJobStore>(t.Dispatcher.Store);
        using var release = new ManualResetEventSlim();
        var hold = 0;
        store.OnWriterTurn = () =>
        {
            if (Volatile.Read(ref hold) == 1)
            {
                release.Wait(TestDispatcher.Patience);
            }
        };

        // The job's own command looks for its start record in the file: its process exists only after the spawn.
        // ("Kind":"started","Id":"probe" without quotes to split: [^.] matches each quote, and the pattern does not match
        // itself in the job's enqueued record, which holds this command.)
        var journal = Path.Combine(data, FileJobStore.FileName);
        var probe = new JobRequest("probe", [$"grep -q Kind[^.]:[^.]started[^.],[^.]Id[^.]:[^.]probe[^.] {journal}"]) { Delay = TimeSpan.FromMinutes(1) };
        await t.Dispatcher.EnqueueAsync(probe).AsTask().WaitAsync(TestDispatcher.Patience);
        try
        {
            // The enqueue is durable; from here the writer is held at its next turn, and the job starts on the clock.
            Volatile.Write(ref hold, 1);
            time.Advance(TimeSpan.FromMinutes(1));
            var result = await t.WaitAsync("probe");
            Assert.True(result.Outcome == JobOutcome.Succeeded,
                $"the job did not find its start record in {journal} (exit code {result.CommandResults.Single().ExitCode}): the record was not written before the spawn");
        }
        finally
        {
            release.Set();
        }
    }

    [Fact]
    public async Task RecordsWrittenWhileARewriteIsQueued_AreInTheNewJournal_OnceEach()
    {
        var dir = Directory.CreateTempSubdirectory("rewrite-tail-").FullName;
        var at = DateTimeOffset.UtcNow;
        var enqueued = new JobEnqueuedRecord(new JobRequest("a", ["true"]), at);
        var store = new FileJobStore(dir, flushToDisk: true, NullLogger.Instance) { FlushDelay = TimeSpan.FromHours(1) };
        await using (store)
        {
            await store.AppendAsync(enqueued).WaitAsync(TestDispatcher.Patience);
            using var release = new ManualResetEventSlim();
            store.OnWriterTurn = () => release.Wait(TestDispatcher.Patience);

            // The rewrite is queued and the writer held before it; the job's start and process are written meanwhile.
            var rewrite = store.RewriteAsync([enqueued]);
            var started = store.AppendAsync(new JobStartedRecord("a", at));
            var process = store.AppendAsync(new JobProcessStartedRecord("a", 0, 4242, 17, "boot"));
            Assert.False(rewrite.IsCompleted);
            Assert.Contains("\"Kind\":\"process\"", await File.ReadAllTextAsync(Path.Combine(dir, FileJobStore.FileName)), StringComparison.Ordinal);

            release.Set();
            await rewrite.WaitAsync(TestDispatcher.Patience);
            await Task.WhenAll(started, process).WaitAsync(TestDispatcher.Patience);
        }

        var loaded = new List<JobStoreRecord>();
        await using (var again = new FileJobStore(dir, flushToDisk: true, NullLogger.Instance))
        {
            await foreach (var record in again.LoadAsync())
            {
                loaded.Add(record);
            }
        }

        Assert.Equal(["enqueued", "started", "process"], loaded.Select(r => r switch
        {
            JobEnqueuedRecord => "enqueued",
            JobStartedRecord => "started",
            JobProcessStartedRecord => "process",
            _ => r.GetType().Name,
        }));
    }
}
