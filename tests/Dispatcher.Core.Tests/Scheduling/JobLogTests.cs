namespace Dispatcher.Tests.Scheduling;

/// <summary>Full job logs in the data directory: bounded, readable by offset while running and after, whole characters only.</summary>
public sealed class JobLogTests
{
    [Fact]
    public async Task BoundedLog_TrimsOldestHalf_OffsetsStayAbsolute()
    {
        await using var t = new TestDispatcher(o => { o.DataDirectory = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N")); o.MaxLogBytes = 65536; });
        await t.RunAsync("chatty", "seq 1 50000");
        await t.WaitAsync("chatty");
        var all = string.Concat(Enumerable.Range(1, 50_000).Select(i => i + "\n"));

        var first = await t.Dispatcher.ReadLogAsync("chatty", 0, 1024 * 1024);

        Assert.True(first.Trimmed > 0);
        Assert.Equal(first.Trimmed, first.Offset);
        Assert.Equal(all.Length, first.EndOffset);
        Assert.True(first.Text.Length <= 65536);
        Assert.EndsWith(first.Text, all, StringComparison.Ordinal);
        Assert.True(first.Finished);
    }

    [Fact]
    public async Task MultibyteOutput_ReadOneByteAtATime_ComesBackWhole()
    {
        await using var t = new TestDispatcher(o => o.DataDirectory = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N")));
        await t.RunAsync("utf8", "sh -c \"printf 'aé€😀z'\"");
        await t.WaitAsync("utf8");

        var text = new System.Text.StringBuilder();
        long offset = 0;
        for (var i = 0; i < 100; i++)
        {
            var chunk = await t.Dispatcher.ReadLogAsync("utf8", offset, 1);
            text.Append(chunk.Text);
            Assert.True(chunk.NextOffset > offset);
            offset = chunk.NextOffset;
            if (offset == chunk.EndOffset)
            {
                break;
            }
        }

        Assert.Equal("aé€😀z", text.ToString());
    }

    [Fact]
    public async Task WithoutDataDirectory_ReadsTheOutputKeptInMemory_AndUnknownIdsThrow()
    {
        await using var t = new TestDispatcher();
        await t.RunAsync("mem", "echo hello");
        await t.WaitAsync("mem");

        var chunk = await t.Dispatcher.ReadLogAsync("mem", 0, 65536);

        Assert.Equal(("hello\n", true), (chunk.Text, chunk.Finished));
        await Assert.ThrowsAsync<JobNotFoundException>(() => t.Dispatcher.ReadLogAsync("ghost", 0, 10).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => t.Dispatcher.ReadLogAsync("mem", -1, 10).AsTask());
    }

    [Fact]
    public async Task SilentJob_CreatesNoLogFile_AndReadsAsEmpty()
    {
        var data = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N"));
        await using var t = new TestDispatcher(o => o.DataDirectory = data);
        await t.RunAsync("quiet", "true");
        await t.WaitAsync("quiet");

        var chunk = await t.Dispatcher.ReadLogAsync("quiet", 0, 65536);

        // Creating, truncating, closing and later deleting a file per job cost a serial queue about 0.5 ms of CPU per job in
        // ext4 (benchmarks/ANALYSIS.md): a job that prints nothing has no log file.
        Assert.Equal((string.Empty, true, 0L), (chunk.Text, chunk.Finished, chunk.EndOffset));
        var logs = Path.Combine(data, "logs");
        Assert.Empty(Directory.Exists(logs) ? Directory.GetFiles(logs) : []);
    }

    [Fact]
    public async Task SilentJob_WithTheIdOfAnEarlierJob_DoesNotShowTheEarlierLog()
    {
        await using var t = new TestDispatcher(o => o.DataDirectory = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N")));
        await t.RunAsync("again", "echo earlier");
        await t.WaitAsync("again");
        Assert.Equal("earlier\n", (await t.Dispatcher.ReadLogAsync("again", 0, 65536)).Text);

        await t.RunAsync("again", "true");
        await t.WaitAsync("again");

        Assert.Equal(string.Empty, (await t.Dispatcher.ReadLogAsync("again", 0, 65536)).Text);
    }

    [Fact]
    public async Task SilentJobs_DeleteNoFile_WhenTheyEndNorAtRetention_APrintedLogIsDeletedAtRetention()
    {
        var data = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N"));
        await using var t = new TestDispatcher(o => { o.DataDirectory = data; o.RetainedJobCount = 1; });
        var logs = t.Dispatcher.Logs!;
        await t.RunAsync("printed", "echo kept");
        await t.WaitAsync("printed");
        var printedLog = logs.PathOf("printed");
        Assert.True(File.Exists(printedLog));

        // Each silent job ends with no log to delete, and retention drops the results before it (one kept) with none either,
        // except the printed job's, whose file goes.
        for (var i = 0; i < 3; i++)
        {
            await t.RunAsync("quiet" + i, "true");
            await t.WaitAsync("quiet" + i);
        }

        Assert.False(File.Exists(printedLog));
        Assert.Equal(1, logs.DeleteCalls);
    }

    [Fact]
    public async Task SilentJobs_WhileNoLogFileExists_HashNoJobId_NeitherAtTheirStartNorEndNorAtRetention()
    {
        // A log's name is the SHA-256 of the job's id: two hashes per job before (at its start and at retention), ~10 µs of
        // the serial chain's CPU with a data directory (benchmarks/ANALYSIS.md, journal5), for a file a silent job never has.
        var data = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N"));
        await using var t = new TestDispatcher(o => { o.DataDirectory = data; o.RetainedJobCount = 2; });
        var logs = t.Dispatcher.Logs!;
        for (var i = 0; i < 6; i++)
        {
            await t.RunAsync("quiet" + i, "true");
            await t.WaitAsync("quiet" + i);
        }

        Assert.Equal(0, logs.PathsComputed);

        // Once a log exists, a silent job still removes a log of its own id (left by an earlier job of that id) at its end.
        await t.RunAsync("printed", "echo kept");
        await t.WaitAsync("printed");
        Assert.True(File.Exists(logs.PathOf("printed")));
        await t.RunAsync("printed", "true");
        await t.WaitAsync("printed");
        Assert.False(File.Exists(logs.PathOf("printed")));
        Assert.Equal(string.Empty, (await t.Dispatcher.ReadLogAsync("printed", 0, 65536)).Text);
    }

    [Fact]
    public async Task SilentJob_WithTheIdOfAJobLoggedBeforeARestart_DoesNotShowTheEarlierLog()
    {
        var data = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N"));
        await using (var first = new TestDispatcher(o => o.DataDirectory = data, data) { KeepDirectory = true })
        {
            await first.RunAsync("again", "echo earlier");
            await first.WaitAsync("again");
        }

        await using var t = new TestDispatcher(o => o.DataDirectory = data, data);
        await t.RunAsync("again", "true");
        await t.WaitAsync("again");

        Assert.Equal(string.Empty, (await t.Dispatcher.ReadLogAsync("again", 0, 65536)).Text);
        Assert.False(File.Exists(t.Dispatcher.Logs!.PathOf("again")));
    }

    [Fact]
    public async Task RunningJob_ThatHasNotPrinted_ReadsAsEmpty_ThenItsOutput()
    {
        await using var t = new TestDispatcher(o => o.DataDirectory = Path.Combine(Path.GetTempPath(), "logs-" + Guid.NewGuid().ToString("N")));
        var marker = t.PathOf("go");
        await t.RunAsync("waits", $"sh -c \"while [ ! -e {marker} ]; do sleep 0.05; done; echo done\"");
        await ProcessProbe.WaitUntilAsync(() => t.Dispatcher.GetJob("waits")?.State == JobState.Running, "the job runs");

        var before = await t.Dispatcher.ReadLogAsync("waits", 0, 65536);
        File.WriteAllText(marker, string.Empty);
        await t.WaitAsync("waits");
        var after = await t.Dispatcher.ReadLogAsync("waits", 0, 65536);

        Assert.Equal((string.Empty, false), (before.Text, before.Finished));
        Assert.Equal(("done\n", true), (after.Text, after.Finished));
    }
}
