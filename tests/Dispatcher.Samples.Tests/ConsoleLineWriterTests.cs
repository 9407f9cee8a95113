using System.Text;
using Dispatcher.SampleHost;
using Microsoft.Extensions.Logging.Console;

namespace Dispatcher.Samples.Tests;

/// <summary>
/// The sample host's console line writer keeps the framework console logger's bound: when the console takes nothing (a pipe
/// nobody reads), at most <see cref="ConsoleLoggerOptions.MaxQueueLength"/> lines wait; then a line waits for room or is
/// dropped and counted, as <see cref="ConsoleLoggerOptions.QueueFullMode"/> says.
/// </summary>
public sealed class ConsoleLineWriterTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task FullQueue_InWaitMode_HoldsTheLogger_UntilTheConsoleTakesLines_ThenEveryLineComesOutInOrder()
    {
        using var stdout = new StuckStream();
        using var writer = new ConsoleLineWriter(stdout, Stream.Null, TimeSpan.FromMilliseconds(20));
        writer.Write("line 0\n", toStandardError: false, maxQueued: 10);
        Assert.True(stdout.Entered.Wait(Patience), "the writer did not start writing");

        // The writer is stuck on line 0: ten lines fit, the eleventh waits.
        var logger = Task.Run(() =>
        {
            for (var i = 1; i <= 11; i++)
            {
                writer.Write($"line {i}\n", toStandardError: false, maxQueued: 10);
            }
        });
        Assert.NotSame(logger, await Task.WhenAny(logger, Task.Delay(TimeSpan.FromMilliseconds(500))));

        stdout.Release();
        await logger.WaitAsync(Patience);
        writer.Dispose();
        Assert.Equal(Enumerable.Range(0, 12).Select(i => $"line {i}"), stdout.Lines());
    }

    [Fact]
    public async Task FullQueue_InDropMode_DropsTheLinesThatDoNotFit_AndSaysHowMany()
    {
        using var stdout = new StuckStream();
        using var writer = new ConsoleLineWriter(stdout, Stream.Null, TimeSpan.FromMilliseconds(20));
        writer.Write("line 0\n", toStandardError: false, maxQueued: 10, ConsoleLoggerQueueFullMode.DropWrite);
        Assert.True(stdout.Entered.Wait(Patience), "the writer did not start writing");

        // Fifteen more while the writer is stuck: ten are kept, five dropped, and no call waits.
        await Task.Run(() =>
        {
            for (var i = 1; i <= 15; i++)
            {
                writer.Write($"line {i}\n", toStandardError: false, maxQueued: 10, ConsoleLoggerQueueFullMode.DropWrite);
            }
        }).WaitAsync(Patience);

        stdout.Release();
        var deadline = DateTime.UtcNow + Patience;
        while (stdout.Lines().Count < 11 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        writer.Write("after\n", toStandardError: false, maxQueued: 10, ConsoleLoggerQueueFullMode.DropWrite);
        writer.Dispose();
        var lines = stdout.Lines();
        Assert.Equal(Enumerable.Range(0, 11).Select(i => $"line {i}"), lines.Take(11));
        Assert.StartsWith("5 log line(s) dropped", lines[11], StringComparison.Ordinal);
        Assert.Equal("after", lines[12]);
        Assert.Equal(13, lines.Count);
    }

    /// <summary>A console that blocks the first write until released, and keeps what it was given.</summary>
    private sealed class StuckStream : Stream
    {
        private readonly MemoryStream _written = new();
        private readonly ManualResetEventSlim _released = new(false);

        public ManualResetEventSlim Entered { get; } = new(false);

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public void Release() => _released.Set();

        public List<string> Lines()
        {
            lock (_written)
            {
                return Encoding.UTF8.GetString(_written.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToList();
            }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            Entered.Set();
            _released.Wait();
            lock (_written)
            {
                _written.Write(buffer, offset, count);
            }
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _released.Set();
                _released.Dispose();
                Entered.Dispose();
                _written.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
