using Dispatcher.Interop;
using Dispatcher.Running;

namespace Dispatcher.Tests.Running;

/// <summary>The child event loop belongs to its runner: made with it, gone with it.</summary>
public sealed class ChildEventLoopTests
{
    [Fact]
    public async Task RunAsync_AfterDispose_FailsClearly_AndLeavesNoProcess()
    {
        var runner = new PosixSpawnJobRunner();
        var marker = "sleep 3" + Random.Shared.Next(10000, 99999).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(0, await runner.RunAsync(Command("true"), new NullOutput(), CancellationToken.None, CancellationToken.None).WaitAsync(TestDispatcher.Patience));

        runner.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => runner.RunAsync(Command(marker), new NullOutput(), CancellationToken.None, CancellationToken.None));
        Assert.Empty(Sleeping(marker));
    }

    [Fact]
    public async Task Dispose_WhileACommandRuns_CompletesItWithObjectDisposed()
    {
        var runner = new PosixSpawnJobRunner();
        var marker = "sleep 3" + Random.Shared.Next(10000, 99999).ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var kill = new CancellationTokenSource();
        var running = runner.RunAsync(Command(marker), new NullOutput(), kill.Token, CancellationToken.None);
        await ProcessProbe.WaitUntilAsync(() => Sleeping(marker).Count == 1, "the command runs");

        runner.Dispose();
        await kill.CancelAsync(); // the dispatcher kills what it runs before the runner goes

        await Assert.ThrowsAsync<ObjectDisposedException>(() => running.WaitAsync(TestDispatcher.Patience));
        await ProcessProbe.WaitUntilAsync(() => Sleeping(marker).Count == 0, "the command is gone");
    }

    [Fact]
    public async Task Dispose_WhileTheLoopHandlesABatch_CompletesTheRestOfTheBatchWithObjectDisposed()
    {
        // A command still watched when the runner is disposed completes with ObjectDisposedException, even when its end is in the
        // batch of events the loop is handling at that moment. Seen in CI: the loop thread woke late, under load, with Dispose's
        // wake-up and a killed command's end in one batch, and completed that command with its exit code. Here the loop is held
        // in an output sink twice: first so that A's output and B's end are ready together (one batch, A first), then inside A's
        // output, while the runner is disposed.
        var dir = Directory.CreateTempSubdirectory("loop-batch-");
        var (go, printed) = (Path.Combine(dir.FullName, "go"), Path.Combine(dir.FullName, "printed"));
        var suffix = Random.Shared.Next(10000, 99999).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var runner = new PosixSpawnJobRunner();
        using var kill = new CancellationTokenSource();
        var holdC = new HeldOutput();
        var holdA = new HeldOutput();
        var b = new PidOutput();
        try
        {
            var c = runner.RunAsync(Command($"sh -c \"echo c; exec sleep 31{suffix}\""), holdC, kill.Token, CancellationToken.None);
            var a = runner.RunAsync(Command($"sh -c \"while [ ! -e {go} ]; do sleep 0.01; done; echo a; touch {printed}; exec sleep 32{suffix}\""),
                holdA, kill.Token, CancellationToken.None);
            var bRun = runner.RunAsync(Command($"sleep 33{suffix}"), b, kill.Token, CancellationToken.None);
            await ProcessProbe.WaitUntilAsync(() => Sleeping($"sleep 33{suffix}").Count == 1, "B runs");
            Assert.True(holdC.Entered.Wait(TestDispatcher.Patience), "the loop delivers C's output");

            // The loop thread is held in C's sink: A prints, then B dies; both stay unhandled.
            await File.WriteAllTextAsync(go, string.Empty);
            await ProcessProbe.WaitUntilAsync(() => File.Exists(printed), "A printed");
            Assert.Equal(0, Libc.kill(b.Pid, ProcessTree.SigKill));
            await ProcessProbe.WaitUntilAsync(() => File.ReadAllText($"/proc/{b.Pid}/stat").Split(") ")[1].StartsWith('Z'), "B is a zombie");
            holdC.Release.Set();

            // The next batch holds A's output, then B's end: the runner is disposed while the loop is in A's sink.
            Assert.True(holdA.Entered.Wait(TestDispatcher.Patience), "the loop delivers A's output");
            runner.Dispose();
            holdA.Release.Set();

            await Assert.ThrowsAsync<ObjectDisposedException>(() => bRun.WaitAsync(TestDispatcher.Patience));

            // A and C still run: they complete once they are gone (the dispatcher kills what it runs before the runner goes).
            await kill.CancelAsync();
            await Assert.ThrowsAsync<ObjectDisposedException>(() => a.WaitAsync(TestDispatcher.Patience));
            await Assert.ThrowsAsync<ObjectDisposedException>(() => c.WaitAsync(TestDispatcher.Patience));
        }
        finally
        {
            holdC.Release.Set();
            holdA.Release.Set();
            await kill.CancelAsync();
            runner.Dispose();
            await ProcessProbe.WaitUntilAsync(() => Sleeping($"sleep 31{suffix}").Count + Sleeping($"sleep 32{suffix}").Count == 0, "A and C are gone");
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task ManyCommandsSpawnedFromSeveralThreads_LeaveNoClosedPipeInTheEpollSet()
    {
        // A child being spawned holds a copy of every descriptor until its exec: a pipe closed meanwhile stayed in the epoll set,
        // at its end (always readable), and every epoll_wait returned it again; the loop thread spun in epoll_wait.
        using var runner = new PosixSpawnJobRunner();
        var exits = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            var running = new List<Task<int>>();
            for (var i = 0; i < 150; i++)
            {
                running.Add(runner.RunAsync(Command("true"), new NullOutput(), CancellationToken.None, CancellationToken.None));
            }

            return await Task.WhenAll(running);
        }))).WaitAsync(TestDispatcher.Patience);

        Assert.All(exits.SelectMany(e => e), code => Assert.Equal(0, code));
        Assert.True(runner.StrayEvents < 100, $"{runner.StrayEvents} events for files the loop had closed");
    }

    /// <summary>Live processes running <paramref name="marker"/> ("sleep N"), whatever path the program was found at.</summary>
    private static List<int> Sleeping(string marker) =>
        [.. ProcessTree.ReadProcessTable().Select(p => p.Pid).Where(pid =>
        {
            try
            {
                var cmdline = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim();
                return cmdline.EndsWith(marker.Replace("sleep", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal)
                    && cmdline.Contains("sleep", StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
        })];

    private static JobCommand Command(string text) => new("j", 0, text, CommandLine.Split(text), null, null);

    private sealed class NullOutput : IJobOutput
    {
        public void Write(ReadOnlySpan<char> text)
        {
        }
    }

    /// <summary>Holds the loop's thread in its first <see cref="Write"/> until released.</summary>
    private sealed class HeldOutput : IJobOutput
    {
        private int _calls;

        public ManualResetEventSlim Entered { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public void Write(ReadOnlySpan<char> text)
        {
            if (Interlocked.Increment(ref _calls) == 1)
            {
                Entered.Set();
                Release.Wait(TestDispatcher.Patience);
            }
        }
    }

    /// <summary>Keeps the pid the runner reports.</summary>
    private sealed class PidOutput : IJobOutput, IJobProcessListener
    {
        private volatile int _pid;

        public int Pid => _pid;

        public void ProcessStarted(int processId) => _pid = processId;

        public void Write(ReadOnlySpan<char> text)
        {
        }
    }
}
