using Dispatcher.Storage;

namespace Dispatcher.Tests.Storage;

public sealed class JobStoreTests
{
    private static Action<DispatcherOptions> WithStore(string directory) => o =>
    {
        o.DataDirectory = directory;
        o.KillGracePeriod = TimeSpan.FromMilliseconds(500);
    };

    [Fact]
    public async Task GracefulStop_KeepsPendingJobsInOrder_AndRecordsTheRunningOneAsInterrupted()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        var first = new TestDispatcher(WithStore(data)) { KeepDirectory = true };
        var log = first.PathOf("order");
        await first.RunInAsync(DispatcherQueues.PkgQueue, "blocker", "sleep 3010");
        for (var i = 0; i < 10; i++)
        {
            await first.RunInAsync(DispatcherQueues.PkgQueue, $"p{i}", $"sh -c \"echo {i} >> {log}\"");
        }

        await first.DisposeAsync();
        Assert.Empty(ProcessProbe.Find("sleep 3010"));
        Assert.False(File.Exists(log));

        await using var second = new TestDispatcher(WithStore(data), first.Directory);
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync($"p{i}")).Outcome);
        }

        Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), File.ReadAllLines(log));
        var blocker = second.Dispatcher.GetResult("blocker")!;
        Assert.Equal(JobOutcome.Interrupted, blocker.Outcome);
        Assert.NotNull(blocker.StartedAt);
    }

    [Fact]
    public async Task History_SurvivesARestart()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        var first = new TestDispatcher(WithStore(data)) { KeepDirectory = true };
        await first.RunAsync("h", "echo kept", "sh -c \"exit 4\"");
        var before = await first.WaitAsync("h");
        await first.DisposeAsync();

        await using var second = new TestDispatcher(WithStore(data), first.Directory);
        var after = second.Dispatcher.GetResult("h")!;

        Assert.Equal(JobOutcome.Failed, after.Outcome);
        Assert.Equal(before.FinishedAt, after.FinishedAt);
        Assert.Equal(["kept\n", ""], after.CommandResults.Select(c => c.Output));
        Assert.Equal([0, 4], after.CommandResults.Select(c => c.ExitCode));
        Assert.Equal(["h"], second.Dispatcher.ListFinished().Select(r => r.Id));
    }

    [Fact]
    public async Task Usage_SurvivesARestart_PerCommandAndInTotal()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        var first = new TestDispatcher(WithStore(data)) { KeepDirectory = true };
        await first.RunAsync("u", "sh -c \"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done\"", "true");
        var before = await first.WaitAsync("u");
        await first.DisposeAsync();
        Assert.All(before.CommandResults, c => Assert.NotNull(c.Usage));

        await using var second = new TestDispatcher(WithStore(data), first.Directory);
        var after = second.Dispatcher.GetResult("u")!;

        Assert.Equal(before.CommandResults.Select(c => c.Usage), after.CommandResults.Select(c => c.Usage));
        Assert.Equal(before.Usage, after.Usage);
    }

    [Fact]
    public void FinishedRecord_WithoutUsage_AsOldJournalsWroteIt_LoadsWithNoUsage()
    {
        // A line as journals before usage was kept wrote it (checksum over the JSON, no usage member).
        const string json = """{"Kind":"finished","Id":"old","At":"2026-11-01T00:00:02+00:00","Queue":"no_queue","Commands":["true"],"Outcome":"Succeeded","EnqueuedAt":"2026-11-01T00:00:00+00:00","StartedAt":"2026-11-01T00:00:01+00:00","Results":[{"Output":"","Dropped":0,"ExitCode":0,"StartedAt":"2026-11-01T00:00:01+00:00","FinishedAt":"2026-11-01T00:00:02+00:00"}]}""";
        var bytes = System.Text.Encoding.UTF8.GetBytes(json);
        var line = System.Text.Encoding.ASCII.GetBytes(System.IO.Hashing.Crc32.HashToUInt32(bytes).ToString("x8", System.Globalization.CultureInfo.InvariantCulture) + " ").Concat(bytes).ToArray();

        Assert.True(FileJobStore.TryDecode(line, out var decoded, out var problem), problem);
        var result = Assert.IsType<JobFinishedRecord>(decoded).Result;
        Assert.Equal((JobOutcome.Succeeded, 0), (result.Outcome, result.ExitCode));
        Assert.Null(result.CommandResults[0].Usage);
        Assert.Null(result.Usage);
    }

    [Fact]
    public void FinishedRecord_WithUsage_RoundTripsExactly_AndStaysCompact()
    {
        var usage = new CommandUsage { UserCpuTime = TimeSpan.FromMicroseconds(1_234_567), SystemCpuTime = TimeSpan.FromMicroseconds(89), PeakMemoryBytes = 7_340_032 };
        var result = new JobResult("u", "no_queue", ["a", "b"], JobOutcome.Succeeded,
            [
                new CommandResult(0, "a", string.Empty, 0, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch) { Usage = usage },
                new CommandResult(1, "b", string.Empty, 0, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch),
            ],
            DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch);
        var plain = FileJobStore.Encode(new JobFinishedRecord(new JobResult("u", "no_queue", ["a", "b"], JobOutcome.Succeeded,
            [.. result.CommandResults.Select(c => new CommandResult(c.Index, c.Command, c.Output, 0, 0, c.StartedAt, c.FinishedAt))],
            DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch)));

        var line = FileJobStore.Encode(new JobFinishedRecord(result));

        Assert.True(FileJobStore.TryDecode(line.AsSpan(0, line.Length - 1), out var decoded, out var problem), problem);
        var back = Assert.IsType<JobFinishedRecord>(decoded).Result;
        Assert.Equal(usage, back.CommandResults[0].Usage);
        Assert.Null(back.CommandResults[1].Usage);
        Assert.Equal(usage, back.Usage);

        // Three numbers and a short member name, nothing for a command without usage.
        Assert.InRange(line.Length - plain.Length, 10, 40);
    }

    [Fact]
    public void FinishedRecord_WithUsageButNoKnownPeak_RoundTripsWithoutAPeak()
    {
        var usage = new CommandUsage { UserCpuTime = TimeSpan.FromMicroseconds(700), SystemCpuTime = TimeSpan.FromMicroseconds(1_100) };
        var result = new JobResult("u", "no_queue", ["a"], JobOutcome.Succeeded,
            [new CommandResult(0, "a", string.Empty, 0, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch) { Usage = usage }],
            DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch);

        var line = FileJobStore.Encode(new JobFinishedRecord(result));

        Assert.Contains("\"Usage\":[700,1100]}", System.Text.Encoding.UTF8.GetString(line), StringComparison.Ordinal);
        Assert.True(FileJobStore.TryDecode(line.AsSpan(0, line.Length - 1), out var decoded, out var problem), problem);
        Assert.Equal(usage, Assert.IsType<JobFinishedRecord>(decoded).Result.CommandResults[0].Usage);
    }

    [Fact]
    public async Task TornTail_RecoversTheIntactPart_AndMovesTheDamageAside()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        var first = new TestDispatcher(WithStore(data)) { KeepDirectory = true };
        await first.RunInAsync(DispatcherQueues.PkgQueue, "blocker", "sleep 3011");
        await first.RunInAsync(DispatcherQueues.PkgQueue, "a", "true");
        await first.RunInAsync(DispatcherQueues.PkgQueue, "b", "true");
        await first.RunInAsync(DispatcherQueues.PkgQueue, "c", "true");
        await first.DisposeAsync();

        // Cut the journal in the middle of its last record ("blocker" finished, interrupted, is the last one written).
        var journal = Path.Combine(data, FileJobStore.FileName);
        var lines = File.ReadAllLines(journal);
        Assert.Contains("\"finished\",\"Id\":\"blocker\"", lines[^1], StringComparison.Ordinal);
        var length = new FileInfo(journal).Length;
        using (var file = new FileStream(journal, FileMode.Open))
        {
            file.SetLength(length - (lines[^1].Length / 2));
        }

        await using var second = new TestDispatcher(WithStore(data), first.Directory);

        Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync("c")).Outcome);
        Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync("a")).Outcome);
        // The blocker's finished record was torn: it comes back as started, and so is interrupted again.
        Assert.Equal(JobOutcome.Interrupted, second.Dispatcher.GetResult("blocker")!.Outcome);
        Assert.Single(Directory.GetFiles(data, FileJobStore.FileName + ".damaged-*"));
    }

    [Fact]
    public async Task CorruptRecord_IsSkippedWithoutResurrectingTheJob()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        var first = new TestDispatcher(WithStore(data)) { KeepDirectory = true };
        await first.RunInAsync(DispatcherQueues.PkgQueue, "blocker", "sleep 3012");
        await first.RunInAsync(DispatcherQueues.PkgQueue, "kept", "true");
        await first.RunInAsync(DispatcherQueues.PkgQueue, "lost", "true");
        await first.DisposeAsync();

        var journal = Path.Combine(data, FileJobStore.FileName);
        var text = File.ReadAllText(journal);
        var at = text.IndexOf("\"lost\"", StringComparison.Ordinal);
        File.WriteAllText(journal, text[..at] + "\"LOST\"" + text[(at + 6)..]); // same length, wrong checksum

        await using var second = new TestDispatcher(WithStore(data), first.Directory);

        Assert.Equal(JobOutcome.Succeeded, (await second.WaitAsync("kept")).Outcome);
        Assert.Null(second.Dispatcher.GetResult("lost"));
        Assert.Null(second.Dispatcher.GetResult("LOST"));
        Assert.DoesNotContain(second.Dispatcher.List(), j => j.Id is "lost" or "LOST");
    }

    [Fact]
    public async Task RerunIfInterrupted_RunsTheJobAgainAfterARestart()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        var first = new TestDispatcher(WithStore(data)) { KeepDirectory = true };
        var marker = first.PathOf("runs");
        await first.Dispatcher.EnqueueAsync(new JobRequest("again", [$"sh -c \"echo run >> {marker}; sleep 3013\""]) { RerunIfInterrupted = true });
        await ProcessProbe.WaitUntilAsync(() => ProcessProbe.Find("sleep 3013").Count == 1, "the job runs");
        await first.DisposeAsync();

        await using var second = new TestDispatcher(WithStore(data), first.Directory);
        await ProcessProbe.WaitUntilAsync(() => File.Exists(marker) && File.ReadAllLines(marker).Length == 2, "the job ran again");
        Assert.Equal(JobState.Running, second.Dispatcher.List().Single().State);
        await second.Dispatcher.KillAsync(["again"]);
    }

    [Fact]
    public async Task Journal_IsCompacted_SoItDoesNotGrowWithoutBound()
    {
        var data = Directory.CreateTempSubdirectory("store-").FullName;
        await using (var t = new TestDispatcher(o => { WithStore(data)(o); o.RetainedJobCount = 10; }, data))
        {
            t.KeepDirectory = true;
            for (var i = 0; i < 400; i++)
            {
                await t.RunAsync($"c{i}", "true");
            }

            await t.WaitAsync("c399");
            await ProcessProbe.WaitUntilAsync(() => t.Dispatcher.List().Count == 0, "every job finished");
        }

        // 400 jobs make 1200 records; compaction keeps the 10 retained results and whatever came after the last compaction.
        Assert.True(File.ReadAllLines(Path.Combine(data, FileJobStore.FileName)).Length < 1100);
    }

    [Fact]
    public void Records_RoundTripThroughTheJournalFormat()
    {
        var request = new JobRequest("r", ["a b", "c"])
        {
            Queue = "pkg_queue",
            WorkingDirectory = "/tmp",
            Environment = new Dictionary<string, string> { ["K"] = "V" },
            Timeout = TimeSpan.FromSeconds(90),
            RerunIfInterrupted = true,
        };
        var line = FileJobStore.Encode(new JobEnqueuedRecord(request, DateTimeOffset.UnixEpoch));
        Assert.Equal((byte)'\n', line[^1]);
        Assert.DoesNotContain((byte)'\n', line[..^1]);

        Assert.True(FileJobStore.TryDecode(line.AsSpan(0, line.Length - 1), out var decoded, out _));
        var back = Assert.IsType<JobEnqueuedRecord>(decoded).Request;
        Assert.Equal(request.Commands, back.Commands);
        Assert.Equal(("pkg_queue", "/tmp", TimeSpan.FromSeconds(90), true), (back.Queue, back.WorkingDirectory, back.Timeout, back.RerunIfInterrupted));
        Assert.Equal("V", back.Environment!["K"]);

        var result = new JobResult("r", "pkg_queue", ["a b", "c"], JobOutcome.Failed,
            [new CommandResult(0, "a b", "out\n", 3, 2, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch.AddSeconds(1))],
            DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch.AddSeconds(2));
        var finished = FileJobStore.Encode(new JobFinishedRecord(result));
        Assert.True(FileJobStore.TryDecode(finished.AsSpan(0, finished.Length - 1), out var decodedResult, out _));
        var r = Assert.IsType<JobFinishedRecord>(decodedResult).Result;
        Assert.Equal((JobOutcome.Failed, 0, "out\n", 3L, 2), (r.Outcome, r.FailedCommand, r.CommandResults[0].Output, r.CommandResults[0].DroppedOutputCharacters, r.ExitCode));

        finished[20] ^= 1;
        Assert.False(FileJobStore.TryDecode(finished.AsSpan(0, finished.Length - 1), out _, out var problem));
        Assert.Equal("checksum mismatch", problem);
    }
}
