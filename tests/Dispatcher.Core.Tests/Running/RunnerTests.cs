using Dispatcher.Running;

namespace Dispatcher.Tests.Running;

/// <summary>The same behaviour from both runners: posix_spawn (the Linux default) and CliWrap (the portable one).</summary>
public sealed class RunnerTests
{
    public static TheoryData<string> Runners => new() { "posix_spawn", "cliwrap" };

    private static IJobRunner Create(string runner) => runner == "cliwrap" ? new CliWrapJobRunner() : new PosixSpawnJobRunner();

    [Fact]
    public void Default_OnThisLinux_IsPosixSpawn() => Assert.IsType<PosixSpawnJobRunner>(JobRunners.CreateDefault());

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task ExitCodesOutputEnvironmentAndDirectory(string runner)
    {
        await using var t = new TestDispatcher(runner: Create(runner));
        await t.Dispatcher.EnqueueAsync(new JobRequest("r", ["sh -c \"echo out; echo err >&2; pwd; echo $K; exit 3\""])
        {
            WorkingDirectory = t.Directory,
            Environment = new Dictionary<string, string> { ["K"] = "V" },
        });

        var result = await t.WaitAsync("r");

        Assert.Equal(3, result.ExitCode);
        Assert.Contains("out\n", result.CommandResults[0].Output, StringComparison.Ordinal);
        Assert.Contains("err\n", result.CommandResults[0].Output, StringComparison.Ordinal);
        Assert.Contains($"{t.Directory}\nV\n", result.CommandResults[0].Output, StringComparison.Ordinal);
        if (runner == "posix_spawn")
        {
            // One pipe for both streams: the order is the order of the writes. (CliWrap reads two pipes, so it may interleave.)
            Assert.Equal($"out\nerr\n{t.Directory}\nV\n", result.CommandResults[0].Output);
        }
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task MissingProgramAndMissingDirectory_Are127WithAMessage(string runner)
    {
        await using var t = new TestDispatcher(runner: Create(runner));
        await t.RunAsync("m", "no-such-program-4712");
        await t.Dispatcher.EnqueueAsync(new JobRequest("d", ["true"]) { WorkingDirectory = "/no/such/dir" });

        var missing = await t.WaitAsync("m");
        var dir = await t.WaitAsync("d");

        Assert.Equal(127, missing.ExitCode);
        Assert.Contains("no-such-program-4712", missing.CommandResults[0].Output, StringComparison.Ordinal);
        Assert.Equal(127, dir.ExitCode);
        Assert.Contains("/no/such/dir", dir.CommandResults[0].Output, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task Kill_ReachesTheWholeTree(string runner)
    {
        await using var t = new TestDispatcher(o => o.KillGracePeriod = TimeSpan.FromMilliseconds(300), runner: Create(runner));
        var marker = runner == "cliwrap" ? "sleep 3021" : "sleep 3022";
        await t.RunAsync("tree", $"sh -c \"trap '' TERM; ({marker} &); {marker}\"");
        await ProcessProbe.WaitUntilAsync(() => ProcessProbe.Find(marker).Count == 2, "both sleeps run");

        await t.Dispatcher.KillAsync(["tree"]);

        Assert.Equal(JobOutcome.Killed, (await t.WaitAsync("tree")).Outcome);
        await ProcessProbe.WaitUntilAsync(() => ProcessProbe.Find(marker).Count == 0, "no sleep is left");
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task Pipelines_EndBySigpipe(string runner)
    {
        await using var t = new TestDispatcher(runner: Create(runner));
        await t.RunAsync("pipe", "sh -c \"yes | head -c 5\"");

        var result = await t.WaitAsync("pipe");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal("y\ny\ny", result.CommandResults[0].Output);
    }
}
