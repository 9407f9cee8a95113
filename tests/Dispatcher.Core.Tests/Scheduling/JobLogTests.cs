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
}
