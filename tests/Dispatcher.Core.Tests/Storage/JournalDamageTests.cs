using System.Globalization;
using System.IO.Hashing;
using System.Text;
using Dispatcher.Storage;

namespace Dispatcher.Tests.Storage;

/// <summary>Issue 12, items 2, 9 and 13: what the journal does with damage, odd line ends, large output and file modes.</summary>
public sealed class JournalDamageTests
{
    private static Action<DispatcherOptions> WithStore(string directory) => o =>
    {
        o.DataDirectory = directory;
        o.KillGracePeriod = TimeSpan.FromMilliseconds(500);
    };

    /// <summary>A blocker and <paramref name="count"/> pending jobs behind it, then a graceful stop: the journal holds them all.</summary>
    private static async Task<string> JournalWithPendingJobsAsync(int count, string blocker)
    {
        var data = Path.Combine(Directory.CreateTempSubdirectory("store-").FullName, "data");
        var first = new TestDispatcher(WithStore(data)) { KeepDirectory = true };
        await first.RunInAsync(DispatcherQueues.PkgQueue, "blocker", blocker);
        for (var i = 0; i < count; i++)
        {
            await first.RunInAsync(DispatcherQueues.PkgQueue, $"p{i:000}", "true");
        }

        await first.DisposeAsync();
        return data;
    }

    private static string Line(string json) =>
        Crc32.HashToUInt32(Encoding.UTF8.GetBytes(json)).ToString("x8", CultureInfo.InvariantCulture) + " " + json + "\n";

    [Fact]
    public async Task CorruptRecord_IsSkipped_AndEveryGoodRecordAfterItIsKept()
    {
        var data = await JournalWithPendingJobsAsync(100, "sleep 3020");
        var journal = Path.Combine(data, FileJobStore.FileName);
        var bytes = File.ReadAllBytes(journal);
        var at = Encoding.UTF8.GetString(bytes).IndexOf("\"p002\"", StringComparison.Ordinal);
        bytes[at + 1] ^= 0x01; // one flipped bit in the third job's record ("p002" becomes "q002"): its checksum fails
        File.WriteAllBytes(journal, bytes);

        await using var second = new TestDispatcher(WithStore(data), data);
        for (var i = 0; i < 100; i++)
        {
            if (i != 2)
            {
                Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync($"p{i:000}")).Outcome);
            }
        }

        Assert.Null(second.Dispatcher.GetResult("p002"));
        var aside = Assert.Single(Directory.GetFiles(data, FileJobStore.FileName + ".damaged-*"));
        Assert.Contains("\"q002\"", File.ReadAllText(aside), StringComparison.Ordinal);
    }

    [Fact]
    public async Task JournalWithCrLfLineEnds_RecoversEveryRecord()
    {
        var data = await JournalWithPendingJobsAsync(20, "sleep 3021");
        var journal = Path.Combine(data, FileJobStore.FileName);
        File.WriteAllText(journal, File.ReadAllText(journal).Replace("\n", "\r\n", StringComparison.Ordinal));

        await using var second = new TestDispatcher(WithStore(data), data);
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync($"p{i:000}")).Outcome);
        }

        Assert.Equal(JobOutcome.Interrupted, second.Dispatcher.GetResult("blocker")!.Outcome);
        Assert.Empty(Directory.GetFiles(data, FileJobStore.FileName + ".damaged-*"));
    }

    [Fact]
    public async Task RecordsWithAValidChecksumButImpossibleContent_AreSkipped()
    {
        var data = await JournalWithPendingJobsAsync(3, "sleep 3022");
        var journal = Path.Combine(data, FileJobStore.FileName);
        var at = "\"At\":\"2026-01-01T00:00:00+00:00\"";
        var bad =
            // More results than commands.
            Line($$"""{"Kind":"finished","Id":"toomany",{{at}},"Queue":"no_queue","Commands":["true"],"Outcome":"Succeeded","EnqueuedAt":"2026-01-01T00:00:00+00:00","Results":[{"Output":"","Dropped":0,"ExitCode":0,"StartedAt":"2026-01-01T00:00:00+00:00","FinishedAt":"2026-01-01T00:00:00+00:00"},{"Output":"","Dropped":0,"ExitCode":0,"StartedAt":"2026-01-01T00:00:00+00:00","FinishedAt":"2026-01-01T00:00:00+00:00"}]}""")
            // A null id.
            + Line($$"""{"Kind":"enqueued","Id":null,{{at}},"Queue":"no_queue","Commands":["true"]}""")
            // A null command.
            + Line($$"""{"Kind":"enqueued","Id":"nullcmd",{{at}},"Queue":"no_queue","Commands":[null]}""")
            // A timeout no TimeSpan can hold.
            + Line($$"""{"Kind":"enqueued","Id":"forever",{{at}},"Queue":"no_queue","Commands":["true"],"TimeoutSeconds":1e300}""");
        var lines = File.ReadAllText(journal);
        var firstLineEnd = lines.IndexOf('\n', StringComparison.Ordinal) + 1;
        File.WriteAllText(journal, lines[..firstLineEnd] + bad + lines[firstLineEnd..]);

        await using var second = new TestDispatcher(WithStore(data), data);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync($"p{i:000}")).Outcome);
        }

        Assert.Null(second.Dispatcher.GetResult("toomany"));
        Assert.DoesNotContain(second.Dispatcher.List(), j => j.Id is "nullcmd" or "forever");
        Assert.Null(second.Dispatcher.GetResult("forever"));
    }

    [Fact]
    public async Task DataDirectoryAndJournal_AreOwnerOnly()
    {
        var data = Path.Combine(Directory.CreateTempSubdirectory("store-").FullName, "fresh");
        await using (var t = new TestDispatcher(WithStore(data), data) { KeepDirectory = true })
        {
            await t.RunAsync("one", "true");
            await t.WaitAsync("one");
        }

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(data));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(data, FileJobStore.FileName)));
    }

    [Fact]
    public async Task AJournalLeftWorldReadable_IsMadeOwnerOnly()
    {
        var data = await JournalWithPendingJobsAsync(1, "sleep 3023");
        var journal = Path.Combine(data, FileJobStore.FileName);
        File.SetUnixFileMode(journal, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        await using var second = new TestDispatcher(WithStore(data), data);
        await second.WaitAsync("p000");

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(journal));
    }

    [Theory]
    [InlineData('\0', 1.4)]
    [InlineData('\u001b', 1.4)]
    [InlineData('é', 2.1)]
    [InlineData('x', 1.1)]
    public void OutputOfControlAndNonAsciiCharacters_IsNotBlownUpInTheJournal(char c, double maxBytesPerCharacter)
    {
        var output = new string(c, 100_000);
        var result = new JobResult("r", "no_queue", ["cmd"], JobOutcome.Succeeded,
            [new CommandResult(0, "cmd", output, 0, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch)],
            DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch);

        var line = FileJobStore.Encode(new JobFinishedRecord(result));

        Assert.True(line.Length < output.Length * maxBytesPerCharacter, $"{line.Length} bytes for {output.Length} characters '{c}'");
        Assert.True(FileJobStore.TryDecode(line.AsSpan(0, line.Length - 1), out var back, out var problem), problem);
        Assert.Equal(output, Assert.IsType<JobFinishedRecord>(back).Result.CommandResults[0].Output);
    }

    [Fact]
    public async Task Journal_IsCompactedByBytes_WhenFewJobsPrintALot()
    {
        // 60 jobs printing 1 MiB of NUL each: far fewer records than the record-count trigger (1000), but tens of MiB.
        var data = Path.Combine(Directory.CreateTempSubdirectory("store-").FullName, "data");
        await using (var t = new TestDispatcher(o => { WithStore(data)(o); o.RetainedJobCount = 1; o.FlushToDisk = false; }, data) { KeepDirectory = true })
        {
            for (var i = 0; i < 60; i++)
            {
                await t.RunInAsync(DispatcherQueues.PkgQueue, $"big{i}", "head -c 1048576 /dev/zero");
            }

            await t.WaitAsync("big59");

            // Without compaction by bytes: 60 × 6 MiB (1.4 MiB since the compact encoding). With it: at most the 64 MiB threshold
            // plus what came after the last compaction. The writer may still be encoding the last records when the jobs have
            // ended (it was, on a loaded machine: the stop came first and found nothing compacted), so wait for it.
            var journal = Path.Combine(data, FileJobStore.FileName);
            await ProcessProbe.WaitUntilAsync(() => new FileInfo(journal).Length < 80L << 20, "the journal is compacted below 80 MiB");
        }
    }

    [Fact]
    public async Task Journal_IsCompacted_WhenTheLastRecordCrossesTheThreshold_AndNoneFollows()
    {
        // The dispatcher checks the threshold as it appends, but the writer counts the bytes only when it has written them:
        // one finished record over the threshold, with nothing after it, was never compacted (CI: an 84 MB journal after 60
        // jobs of 1 MiB, the writer behind the appends on a loaded machine).
        var data = Path.Combine(Directory.CreateTempSubdirectory("store-").FullName, "data");
        await using var t = new TestDispatcher(o => { WithStore(data)(o); o.FlushToDisk = false; }, data);
        ((FileJobStore)t.Dispatcher.Store!).CompactionBytes = 1 << 20;
        var journal = Path.Combine(data, FileJobStore.FileName);

        await t.RunAsync("big", "head -c 2097152 /dev/zero");
        await t.WaitAsync("big");

        // Enqueued, started, its process and finished: four records; compacted, the finished one alone.
        await ProcessProbe.WaitUntilAsync(() => File.ReadAllLines(journal).Length == 1, "the journal is compacted to the finished job's record");
    }
}
