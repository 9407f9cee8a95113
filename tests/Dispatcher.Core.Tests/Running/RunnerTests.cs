using Dispatcher.Running;

namespace Dispatcher.Tests.Running;

/// <summary>The same behaviour from both runners: posix_spawn (the Linux default) and CliWrap (the portable one).</summary>
public sealed class RunnerTests
{
    public static TheoryData<string> Runners => new() { "posix_spawn", "cliwrap" };

    private static IJobRunner Create(string runner) => runner == "cliwrap" ? new CliWrapJobRunner() : new PosixSpawnJobRunner();

    [Fact]
    public void Default_OnThisLinux_IsPosixSpawn() => Assert.IsType<PosixSpawnJobRunner>(JobRunners.CreateDefault());

    [Fact]
    public async Task ManyCommandsAtOnce_EachGetsDevNullAsStdin_AndItsOwnPipeAsStdoutAndStderr()
    {
        // The spawn's file actions are shared by every spawn whose pipe has the same descriptor number: each command must
        // still write to its own pipe, with nothing of the host's stdin.
        await using var t = new TestDispatcher(o => o.Queues["all"] = new QueueOptions { MaxConcurrency = 0 }, runner: new PosixSpawnJobRunner());
        var ids = Enumerable.Range(0, 40).Select(i => $"p{i}").ToList();
        await Task.WhenAll(ids.Select(id => Task.Run(() => t.Dispatcher.EnqueueAsync(new JobRequest(id,
            [$"sh -c \"sleep 0.05; echo {id}; echo {id}-err >&2; readlink /proc/self/fd/0; cat\""]) { Queue = "all" }).AsTask())));
        foreach (var id in ids)
        {
            var result = await t.WaitAsync(id);
            Assert.Equal(0, result.ExitCode);
            Assert.Equal($"{id}\n{id}-err\n/dev/null\n", result.CommandResults[0].Output);
        }
    }

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

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task CommandThatClosesItsOutputEarly_IsWaitedForUntilItExits(string runner)
    {
        await using var t = new TestDispatcher(runner: Create(runner));
        using var events = t.Dispatcher.Subscribe();
        await t.Dispatcher.EnqueueAsync(new JobRequest("early", ["sh -c \"echo before; exec >/dev/null 2>&1; while [ ! -e go ]; do sleep 0.01; done; exit 7\""])
        {
            WorkingDirectory = t.Directory,
        });
        await foreach (var e in events.ReadAllAsync().WithCancellation(new CancellationTokenSource(TestDispatcher.Patience).Token))
        {
            if (e is Dispatcher.Events.JobOutputEvent)
            {
                break;
            }
        }

        // Its output has ended (or is about to); it exits only once the file exists.
        await File.WriteAllTextAsync(t.PathOf("go"), string.Empty);
        var result = await t.WaitAsync("early");

        Assert.Equal(7, result.ExitCode);
        Assert.Equal("before\n", result.CommandResults[0].Output);
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task ConcurrentChattyCommands_KeepEveryCharacterInOrder_AcrossUtf8SplitReads(string runner)
    {
        await using var t = new TestDispatcher(o => o.Queues["many"] = new QueueOptions { MaxConcurrency = 6 }, runner: Create(runner));
        const int Lines = 12_000;
        var expected = string.Concat(Enumerable.Range(0, Lines).Select(i => $"{i} é€😀\n"));
        var ids = Enumerable.Range(0, 6).Select(i => $"chatty{i}").ToArray();
        foreach (var id in ids)
        {
            await t.RunInAsync("many", id, $"sh -c \"i=0; while [ $i -lt {Lines} ]; do echo $i é€😀; i=$((i+1)); done\"");
        }

        foreach (var id in ids)
        {
            var result = await t.WaitAsync(id);
            Assert.Equal(JobOutcome.Succeeded, result.Outcome);
            Assert.Equal(0, result.CommandResults[0].DroppedOutputCharacters);
            Assert.True(expected == result.CommandResults[0].Output, $"{id}: output differs ({result.CommandResults[0].Output.Length} of {expected.Length} characters)");
        }
    }

    [Fact]
    public async Task OutputSinkThatThrows_FailsTheCommandWithItsException_AndTheProcessIsReaped()
    {
        var directory = Directory.CreateTempSubdirectory("dispatcher-sink-");
        try
        {
            var pidFile = Path.Combine(directory.FullName, "pid");
            var command = new JobCommand("j", 0, "x", ["sh", "-c", $"echo $$ > '{pidFile}'; echo hello; echo more"], null, null);

            var thrown = await Assert.ThrowsAsync<InvalidOperationException>(
                () => new PosixSpawnJobRunner().RunAsync(command, new ThrowingOutput(), CancellationToken.None, CancellationToken.None).WaitAsync(TestDispatcher.Patience));

            Assert.Equal("sink is broken", thrown.Message);
            var pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
            Assert.False(Directory.Exists($"/proc/{pid}"), "the command was reaped, not left a zombie");
            var ok = new JobCommand("j", 0, "true", ["true"], null, null);
            Assert.Equal(0, await new PosixSpawnJobRunner().RunAsync(ok, new ThrowingOutput(), CancellationToken.None, CancellationToken.None).WaitAsync(TestDispatcher.Patience));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task HostEnvironmentChanges_ReachTheNextCommand(string runner)
    {
        await using var t = new TestDispatcher(runner: Create(runner));
        var name = "DISPATCHER_TEST_" + runner.Replace('_', 'X').ToUpperInvariant();
        try
        {
            Environment.SetEnvironmentVariable(name, "first");
            await t.RunAsync("one", $"sh -c \"echo ${name}\"");
            Assert.Equal("first\n", (await t.WaitAsync("one")).CommandResults[0].Output);

            Environment.SetEnvironmentVariable(name, "second");
            await t.RunAsync("two", $"sh -c \"echo ${name}\"");
            Assert.Equal("second\n", (await t.WaitAsync("two")).CommandResults[0].Output);

            Environment.SetEnvironmentVariable(name, null);
            await t.RunAsync("three", $"sh -c \"echo [${name}]\"");
            Assert.Equal("[]\n", (await t.WaitAsync("three")).CommandResults[0].Output);
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, null);
        }
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task HostEnvironmentChanges_OfTheSameLength_AndNewVariables_ReachTheNextCommand_AlsoWithTheJobsOwnVariables(string runner)
    {
        // The posix_spawn runner reuses its block while the host's environment is unchanged: a change that keeps every length,
        // and one that adds a variable, must still be seen, with and without the job's own variables on top.
        await using var t = new TestDispatcher(runner: Create(runner));
        var name = "DISPATCHER_SAME_LENGTH_" + runner.Replace('_', 'X').ToUpperInvariant();
        var added = name + "_ADDED";
        var own = new Dictionary<string, string> { ["JOB_OWN"] = "mine" };
        async Task<string> Echo(string id, Dictionary<string, string>? environment)
        {
            await t.Dispatcher.EnqueueAsync(new JobRequest(id, [$"sh -c \"echo ${name}-${added}-$JOB_OWN\""]) { Environment = environment });
            return (await t.WaitAsync(id)).CommandResults[0].Output;
        }

        try
        {
            Environment.SetEnvironmentVariable(name, "aaaa");
            Assert.Equal("aaaa--\n", await Echo("one", null));
            Assert.Equal("aaaa--mine\n", await Echo("one-own", own));

            Environment.SetEnvironmentVariable(name, "bbbb");
            Assert.Equal("bbbb--\n", await Echo("two", null));
            Environment.SetEnvironmentVariable(name, "cccc");
            Assert.Equal("cccc--mine\n", await Echo("two-own", own));

            Environment.SetEnvironmentVariable(added, "new");
            Assert.Equal("cccc-new-\n", await Echo("three", null));
            Environment.SetEnvironmentVariable(added, "neW");
            Assert.Equal("cccc-neW-mine\n", await Echo("three-own", own));
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, null);
            Environment.SetEnvironmentVariable(added, null);
        }
    }

    [Fact]
    public async Task EachCommand_GetsAPipeOfItsOwn_AndNoneStaysOpenAfterItsCommand()
    {
        // Each command writes to a pipe of its own, and no end of it stays open in this process once the command has ended, nor
        // after the runner is disposed (no descriptor leak).
        var runner = new PosixSpawnJobRunner();
        var pipes = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var output = new CollectingOutput();
            var command = new JobCommand("j", 0, "x", ["sh", "-c", $"echo {i}; readlink /proc/self/fd/1"], null, null);
            Assert.Equal(0, await runner.RunAsync(command, output, CancellationToken.None, CancellationToken.None).WaitAsync(TestDispatcher.Patience));
            var pipe = output.Text.Split('\n')[1];
            Assert.StartsWith("pipe:[", pipe, StringComparison.Ordinal);
            Assert.DoesNotContain(pipe, OpenFiles());
            pipes.Add(pipe);
        }

        Assert.Equal(3, pipes.Distinct().Count());
        runner.Dispose();
        Assert.Empty(pipes.Intersect(OpenFiles()));

        static HashSet<string?> OpenFiles() => Directory.EnumerateFileSystemEntries("/proc/self/fd").Select(fd =>
        {
            try
            {
                return new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                return null;
            }
        }).ToHashSet();
    }

    [Fact]
    public async Task ProcessStartTime_ThatTheRunnerKnowsFromTheClock_IsTheOneProcReads_AndACommandAcrossATickIsLeftToProc()
    {
        // The journal identifies a command's process by its pid and its start time (/proc/PID/stat field 22, clock ticks since
        // boot): recovery after a crash kills a leftover only if both match. The runner brackets the spawn with CLOCK_BOOTTIME
        // and reports the tick when both readings fall in the same one; each command here prints its own stat line.
        using var runner = new PosixSpawnJobRunner();
        var known = 0;
        for (var i = 0; i < 150; i++)
        {
            var output = new StartTimeOutput();
            var command = new JobCommand("j", 0, "x", ["sh", "-c", "cat /proc/$$/stat"], null, null);
            Assert.Equal(0, await runner.RunAsync(command, output, CancellationToken.None, CancellationToken.None).WaitAsync(TestDispatcher.Patience));
            var line = output.Text.TrimEnd('\n');
            Assert.StartsWith($"{output.Pid} (", line, StringComparison.Ordinal);
            var fields = line[(line.LastIndexOf(')') + 2)..].Split(' ');
            var fromProc = ulong.Parse(fields[22 - 3], System.Globalization.CultureInfo.InvariantCulture);
            if (output.StartTime is { } fromClock)
            {
                Assert.Equal(fromProc, fromClock);
                known++;
            }
        }

        // A spawn takes well under a tick (10 ms): nearly every start time is known (the rest are read from /proc as before).
        // Loose, for a loaded machine, where a preempted spawn crosses ticks more often: what matters is that those known match.
        Assert.True(known >= 30, $"only {known} of 150 start times were known from the clock");
    }

    [Fact]
    public void StartTimeBetween_IsTheTickOfBothReadings_OrNullAcrossATickOrWithoutAClock()
    {
        var tick = ProcessTree.TickNanoseconds;
        Assert.True(tick > 0 && ProcessTree.BootClock() > 0, "Linux with USER_HZ dividing a second has a tick and the clock");
        Assert.Equal(123UL, ProcessTree.StartTimeBetween((123 * tick) + 1, (123 * tick) + tick - 1));
        Assert.Null(ProcessTree.StartTimeBetween((123 * tick) + tick - 1, (124 * tick) + 1));
        Assert.Null(ProcessTree.StartTimeBetween(-1, 5));
        Assert.Null(ProcessTree.StartTimeBetween(5 * tick, 4 * tick));
    }

    /// <summary>Keeps a command's output and what the runner reported of its process.</summary>
    private sealed class StartTimeOutput : IJobOutput, IJobProcessListener
    {
        private readonly System.Text.StringBuilder _text = new();

        public string Text => _text.ToString();

        public int Pid { get; private set; }

        public ulong? StartTime { get; private set; }

        public void ProcessStarted(int processId, ulong? startTime) => (Pid, StartTime) = (processId, startTime);

        public void Write(ReadOnlySpan<char> text) => _text.Append(text);
    }

    private sealed class CollectingOutput : IJobOutput
    {
        private readonly System.Text.StringBuilder _text = new();

        public string Text => _text.ToString();

        public void Write(ReadOnlySpan<char> text) => _text.Append(text);
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public async Task ProgramThatMovesOnPath_IsFoundAgain_AndOneThatIsGone_Is127(string runner)
    {
        await using var t = new TestDispatcher(runner: Create(runner));
        var first = Directory.CreateDirectory(t.PathOf("first")).FullName;
        var second = Directory.CreateDirectory(t.PathOf("second")).FullName;
        var tool = "dispatcher-moving-tool-" + runner;
        void Install(string dir, string text)
        {
            File.WriteAllText(Path.Combine(dir, tool), $"#!/bin/sh\necho {text}\n");
            File.SetUnixFileMode(Path.Combine(dir, tool), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        var environment = new Dictionary<string, string> { ["PATH"] = $"{first}:{second}:/usr/bin:/bin" };
        Install(second, "second");
        await t.Dispatcher.EnqueueAsync(new JobRequest("a", [tool]) { Environment = environment });
        Assert.Equal("second\n", (await t.WaitAsync("a")).CommandResults[0].Output);

        // Within the second the look-up is remembered: the program leaves the directory it was found in.
        File.Delete(Path.Combine(second, tool));
        Install(first, "first");
        await t.Dispatcher.EnqueueAsync(new JobRequest("b", [tool]) { Environment = environment });
        Assert.Equal("first\n", (await t.WaitAsync("b")).CommandResults[0].Output);

        File.Delete(Path.Combine(first, tool));
        await t.Dispatcher.EnqueueAsync(new JobRequest("c", [tool]) { Environment = environment });
        var gone = await t.WaitAsync("c");
        Assert.Equal(127, gone.ExitCode);
        Assert.Contains(tool, gone.CommandResults[0].Output, StringComparison.Ordinal);
    }

    private sealed class ThrowingOutput : IJobOutput
    {
        public void Write(ReadOnlySpan<char> text) => throw new InvalidOperationException("sink is broken");
    }
}
