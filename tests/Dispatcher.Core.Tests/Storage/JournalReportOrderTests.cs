using Dispatcher.Events;
using Dispatcher.Storage;

namespace Dispatcher.Tests.Storage;

/// <summary>
/// README, Durability: what a job did is written into the journal file by the thread that records it, before the dispatcher
/// goes on. A job's end is in the file before its result is reported (the finished event, the completion of a wait), and its
/// process is in the file while the process runs; a kill -9 of the host after either finds them on restart. (A job's start
/// before its spawn: <see cref="JournalStartRecordTests"/>.)
/// </summary>
public sealed class JournalReportOrderTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task SerialQueue_EachStartIsInTheFileBeforeItsSpawn_EachEndBeforeItsReport_EventsInOrder(bool flushToDisk)
    {
        var data = Directory.CreateTempSubdirectory("end-record-").FullName;
        await using var t = new TestDispatcher(o =>
        {
            o.DataDirectory = data;
            o.FlushToDisk = flushToDisk;
        }, data);
        var journal = Path.Combine(data, FileJobStore.FileName);

        // A slow disk: each write takes 20 ms more, so a report or a spawn that went ahead of its record would find it missing.
        Assert.IsType<FileJobStore>(t.Dispatcher.Store).OnCommit = () => Thread.Sleep(20);
        using var subscription = t.Dispatcher.Subscribe();
        var ids = Enumerable.Range(0, 30).Select(i => $"end{i:D2}").ToArray();
        var events = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var missing = new System.Collections.Concurrent.ConcurrentQueue<string>();

        // The reader looks at the file as each result arrives: the record must already be there, not merely soon after.
        var reader = Task.Run(async () =>
        {
            var seen = 0;
            await foreach (var e in subscription.ReadAllAsync())
            {
                if (e is JobStartedEvent started && started.JobId.StartsWith("end", StringComparison.Ordinal))
                {
                    events.Enqueue("started " + started.JobId);
                }

                if (e is JobFinishedEvent finished && finished.JobId.StartsWith("end", StringComparison.Ordinal))
                {
                    events.Enqueue("finished " + finished.JobId);
                    if (!Journal(journal).Contains(Finished(finished.JobId), StringComparison.Ordinal))
                    {
                        missing.Enqueue($"{finished.JobId} (finished event)");
                    }

                    if (++seen == ids.Length)
                    {
                        return;
                    }
                }
            }
        });

        // Serial: each job after the first starts in the lock section that ends the one before. Its command looks for its own start record ("Kind":"started","Id":"endNN"
        // with [^.] for each quote, which does not match itself in the enqueued record) and prints a line.
        // Enqueued one by one into the paused queue, so that they run in this order once it is resumed.
        await t.Dispatcher.PauseQueueAsync(DispatcherQueues.PkgQueue).AsTask().WaitAsync(TestDispatcher.Patience);
        foreach (var id in ids)
        {
            await t.RunInAsync(DispatcherQueues.PkgQueue, id,
                $"sh -c \"grep -q Kind[^.]:[^.]started[^.],[^.]Id[^.]:[^.]{id}[^.] {journal} && echo output of {id}\"").WaitAsync(TestDispatcher.Patience);
        }

        await t.Dispatcher.ResumeQueueAsync(DispatcherQueues.PkgQueue).AsTask().WaitAsync(TestDispatcher.Patience);
        foreach (var id in ids)
        {
            var result = await t.WaitAsync(id);
            Assert.True(result.Outcome == JobOutcome.Succeeded,
                $"{id} did not find its start record in {journal} (exit code {result.CommandResults.Single().ExitCode}, output {result.CommandResults.Single().Output}): the record was not written before the spawn");
            Assert.Equal($"output of {id}\n", result.CommandResults.Single().Output);
            if (!Journal(journal).Contains(Finished(id), StringComparison.Ordinal))
            {
                missing.Enqueue($"{id} (wait)");
            }
        }

        await reader.WaitAsync(TestDispatcher.Patience);
        Assert.True(missing.IsEmpty, $"reported before its end record was in {journal}: {string.Join(", ", missing)}");

        // The events keep their order: each job starts, then finishes, then the next one starts (enqueued in this order into a
        // serial queue, they run in it).
        Assert.Equal(ids.SelectMany(id => new[] { "started " + id, "finished " + id }), events);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ProcessRecord_IsInTheFile_WhileTheProcessRuns(bool flushToDisk)
    {
        var data = Directory.CreateTempSubdirectory("process-record-").FullName;
        await using var t = new TestDispatcher(o =>
        {
            o.DataDirectory = data;
            o.FlushToDisk = flushToDisk;
        }, data);
        var journal = Path.Combine(data, FileJobStore.FileName);

        // The job's own command waits (at most 30 s) for its process record in the file, and fails if it never comes. The
        // pattern, "Kind":"process","Id":"proc" with [^.] for each quote, does not match itself in the job's enqueued record.
        var command = $"sh -c \"i=0; while [ $i -lt 600 ]; do grep -q Kind[^.]:[^.]process[^.],[^.]Id[^.]:[^.]proc[^.] {journal} && exit 0; i=$((i+1)); sleep 0.05; done; exit 1\"";
        await t.RunAsync("proc", command).WaitAsync(TestDispatcher.Patience);
        var result = await t.WaitAsync("proc");
        Assert.True(result.Outcome == JobOutcome.Succeeded,
            $"the job's process did not find its process record in {journal} while it ran (exit code {result.CommandResults.Single().ExitCode}, output {result.CommandResults.Single().Output})");
    }

    private static string Finished(string id) => $"\"Kind\":\"finished\",\"Id\":\"{id}\"";

    private static string Journal(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(file);
        return reader.ReadToEnd();
    }
}
