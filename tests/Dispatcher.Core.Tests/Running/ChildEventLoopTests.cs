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

    [Fact]
    public async Task ManyCommandsAtOnce_SomeOutlivedByTheirOutput_EndWithAllOutputAndTheirExitCode_ReapedWithNoPidfdLeft()
    {
        // Whichever of a command's exit and its output's end comes first (a third of these commands exit at once while a
        // descendant still holds their output), it ends with every byte and its own exit code, it is reaped, and no pidfd the
        // loop opened for it stays open.
        using var runner = new PosixSpawnJobRunner();
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(thread => Task.Run(async () =>
        {
            var running = new List<Task<(int Index, int Exit, string Output)>>();
            for (var n = 0; n < 50; n++)
            {
                var i = (thread * 50) + n;
                running.Add(Run(i));
            }

            return await Task.WhenAll(running);
        }))).WaitAsync(TestDispatcher.Patience);

        var pids = new HashSet<int>();
        foreach (var (i, exit, output) in results.SelectMany(r => r))
        {
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("pid ", lines[0], StringComparison.Ordinal);
            pids.Add(int.Parse(lines[0][4..], System.Globalization.CultureInfo.InvariantCulture));
            switch (i % 3)
            {
                case 0:
                    Assert.Equal(i % 7, exit);
                    Assert.Equal([$"out-{i}", $"err-{i}"], lines[1..]);
                    break;
                case 1:
                    // The command exited at once; a descendant held its output and wrote to it later.
                    Assert.Equal(5, exit);
                    Assert.Equal([$"late-{i}"], lines[1..]);
                    break;
                default:
                    Assert.Equal(0, exit);
                    Assert.Single(lines);
                    break;
            }
        }

        Assert.Equal(200, pids.Count);
        // A pidfd of a reaped process shows pid -1: 200 of them if this runner left its pidfds open. Other tests running at the
        // same time hold a few for a moment at most.
        var leaked = OpenPidfds().Where(pid => pid == -1 || pids.Contains(pid)).ToList();
        Assert.True(leaked.Count < 20, $"{leaked.Count} pidfds left open: {string.Join(", ", leaked)}");
        var zombies = pids.Where(IsOurZombie).ToList();
        Assert.True(zombies.Count == 0, $"not reaped: {string.Join(", ", zombies)}");

        async Task<(int Index, int Exit, string Output)> Run(int i)
        {
            var script = (i % 3) switch
            {
                0 => $"echo pid $$; echo out-{i}; echo err-{i} >&2; exit {i % 7}",
                1 => $"echo pid $$; (sleep 0.3; echo late-{i}) & exit 5",
                _ => "echo pid $$; exec true",
            };
            var output = new CollectingOutput();
            var exit = await runner.RunAsync(new JobCommand("j", 0, "sh", ["sh", "-c", script], null, null), output, CancellationToken.None, CancellationToken.None);
            return (i, exit, output.Text);
        }
    }

    [Fact]
    public async Task ACommandThatOutlivesItsOutput_DoesNotHoldUpOtherCommands_AndEndsWhenKilled()
    {
        // Once a command's output has ended while it still runs, the loop waits for its exit and for every other command's
        // events at once: another command started meanwhile runs to its end, output and exit code, while the first one lives on.
        using var runner = new PosixSpawnJobRunner();
        var suffix = Random.Shared.Next(10000, 99999).ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var kill = new CancellationTokenSource();
        var quiet = new PidOutput();
        var outlives = runner.RunAsync(Command($"sh -c \"exec >/dev/null 2>&1; exec sleep 34{suffix}\""), quiet, kill.Token, CancellationToken.None);
        try
        {
            // The loop opened a pidfd for it: its output has ended and the loop waits for its exit.
            await ProcessProbe.WaitUntilAsync(() => quiet.Pid > 0 && OpenPidfds().Contains(quiet.Pid), "the loop waits for the silent command's exit");

            var output = new CollectingOutput();
            var other = await runner.RunAsync(Command("sh -c \"echo other; exit 4\""), output, CancellationToken.None, CancellationToken.None)
                .WaitAsync(TestDispatcher.Patience);

            Assert.Equal(4, other);
            Assert.Equal("other\n", output.Text);
            Assert.False(outlives.IsCompleted);
            Assert.Single(Sleeping($"sleep 34{suffix}"));
        }
        finally
        {
            await kill.CancelAsync();
        }

        Assert.Equal(128 + ProcessTree.SigKill, await outlives.WaitAsync(TestDispatcher.Patience));
        Assert.DoesNotContain(quiet.Pid, OpenPidfds());
    }

    [Fact]
    public async Task Commands_StartWithNoSignalBlocked_AndProcessStillSeesItsChildrenExit_AlsoWhenStartedOnTheLoopThread()
    {
        // A command must not inherit a signal mask (the spawn attributes give it an empty one), and .NET's Process, which learns
        // of its children's exits from SIGCHLD, must still do so, also for a child started on the loop's thread itself. Both
        // are started there (in the first command's output sink), as the dispatcher starts a queue's next job there.
        using var runner = new PosixSpawnJobRunner();
        var onLoop = new StartingOutput(runner);
        Assert.Equal(0, await runner.RunAsync(Command("echo go"), onLoop, CancellationToken.None, CancellationToken.None).WaitAsync(TestDispatcher.Patience));
        Assert.NotNull(onLoop.Command);
        Assert.Equal(0, await onLoop.Command.WaitAsync(TestDispatcher.Patience));
        Assert.Contains("SigBlk:\t0000000000000000", onLoop.CommandOutput.Text, StringComparison.Ordinal);

        using var started = onLoop.Process ?? throw new InvalidOperationException("no process was started on the loop's thread");
        await started.WaitForExitAsync().WaitAsync(TestDispatcher.Patience);
        Assert.Equal(3, started.ExitCode);
        using var elsewhere = System.Diagnostics.Process.Start("sh", ["-c", "exit 5"]);
        await elsewhere.WaitForExitAsync().WaitAsync(TestDispatcher.Patience);
        Assert.Equal(5, elsewhere.ExitCode);
    }

    [Fact]
    public async Task ProcessesStartedOnTheLoopThread_OrOnAThreadItCreates_DoNotInheritABlockedSigchld()
    {
        // Code that runs on the loop's thread (what follows a command's end: the dispatcher's continuations, its journal and logging
        // calls) may start a process or a thread, a new thread inherits its creator's signal mask, and .NET's Process
        // gives a child the mask of the thread that starts it. Such a child must not start with SIGCHLD blocked: a program that
        // waits for SIGCHLD without unblocking it then hangs.
        using var runner = new PosixSpawnJobRunner();
        var onLoop = new MaskProbingOutput();
        Assert.Equal(0, await runner.RunAsync(Command("echo go"), onLoop, CancellationToken.None, CancellationToken.None).WaitAsync(TestDispatcher.Patience));

        var masks = await onLoop.Masks.Task.WaitAsync(TestDispatcher.Patience);
        Assert.Equal(2, masks.Count);
        Assert.All(masks, mask => Assert.True((mask & (1UL << (ProcessTree.SigChld - 1))) == 0, $"SigBlk {mask:x16}"));
    }

    /// <summary>The processes that this process holds a pidfd of (from /proc/self/fdinfo; -1 for one already reaped).</summary>
    private static List<int> OpenPidfds()
    {
        var pids = new List<int>();
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget != "anon_inode:[pidfd]")
                {
                    continue;
                }

                var pidLine = File.ReadAllLines($"/proc/self/fdinfo/{Path.GetFileName(fd)}").FirstOrDefault(l => l.StartsWith("Pid:", StringComparison.Ordinal));
                if (pidLine is not null)
                {
                    pids.Add(int.Parse(pidLine[4..].Trim(), System.Globalization.CultureInfo.InvariantCulture));
                }
            }
            catch (IOException)
            {
                // closed meanwhile (another test's descriptor)
            }
        }

        return pids;
    }

    /// <summary>Whether <paramref name="pid"/> is an unreaped child of this process.</summary>
    private static bool IsOurZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields[0] == "Z" && fields[1] == Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return false;
        }
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

    private sealed class CollectingOutput : IJobOutput
    {
        private readonly System.Text.StringBuilder _text = new();

        public string Text
        {
            get
            {
                lock (_text)
                {
                    return _text.ToString();
                }
            }
        }

        public void Write(ReadOnlySpan<char> text)
        {
            lock (_text)
            {
                _text.Append(text);
            }
        }
    }

    private sealed class NullOutput : IJobOutput
    {
        public void Write(ReadOnlySpan<char> text)
        {
        }
    }

    /// <summary>On its first call (on the loop's thread): starts a process that exits with 3 and a command that prints its signal masks.</summary>
    private sealed class StartingOutput(PosixSpawnJobRunner runner) : IJobOutput
    {
        public System.Diagnostics.Process? Process { get; private set; }

        public Task<int>? Command { get; private set; }

        public CollectingOutput CommandOutput { get; } = new();

        public void Write(ReadOnlySpan<char> text)
        {
            if (Process is null)
            {
                Process = System.Diagnostics.Process.Start("sh", ["-c", "exit 3"]);
                Command = runner.RunAsync(ChildEventLoopTests.Command("grep -E \"^Sig(Blk|Ign)\" /proc/self/status"), CommandOutput,
                    CancellationToken.None, CancellationToken.None);
            }
        }
    }

    /// <summary>
    /// On its first call (on the loop's thread): starts a process there and another on a thread created there, each printing
    /// its blocked-signal mask; <see cref="Masks"/> gets both.
    /// </summary>
    private sealed class MaskProbingOutput : IJobOutput
    {
        private bool _started;

        public TaskCompletionSource<List<ulong>> Masks { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Write(ReadOnlySpan<char> text)
        {
            if (_started)
            {
                return;
            }

            _started = true;
            var here = StartProbe();
            var thread = new Thread(() =>
            {
                try
                {
                    using var there = StartProbe();
                    using (here)
                    {
                        Masks.TrySetResult([ReadMask(here), ReadMask(there)]);
                    }
                }
                catch (Exception ex)
                {
                    Masks.TrySetException(ex);
                }
            });
            thread.Start();
        }

        private static System.Diagnostics.Process StartProbe() => System.Diagnostics.Process.Start(
            new System.Diagnostics.ProcessStartInfo("grep", ["^SigBlk:", "/proc/self/status"]) { RedirectStandardOutput = true })!;

        private static ulong ReadMask(System.Diagnostics.Process process)
        {
            var line = process.StandardOutput.ReadToEnd().Trim();
            return ulong.Parse(line["SigBlk:".Length..].Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
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

        public void ProcessStarted(int processId, ulong? startTime) => _pid = processId;

        public void Write(ReadOnlySpan<char> text)
        {
        }
    }
}
