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
}
