using System.Diagnostics;
using Dispatcher.Containment;

namespace Dispatcher.Tests.Containment;

/// <summary>
/// Jobs in cgroups, with real processes. Each test runs once per way of tracking a job this machine offers (cgroup v2, the
/// cgroup v1 freezer); a way the machine lacks is reported as skipped with the reason, never passed silently.
/// </summary>
public sealed class ContainmentTests
{
    public static TheoryData<ContainmentMode> Modes => new() { ContainmentMode.CgroupV2, ContainmentMode.CgroupV1 };

    [SkippableTheory]
    [MemberData(nameof(Modes))]
    public async Task Kill_GrandchildThatCalledSetsid_LeavesNoProcess(ContainmentMode mode)
    {
        SkipUnlessAvailable(mode);
        var mark = Guid.NewGuid().ToString("N");
        await using var cleanup = new MarkedCleanup(mark);
        await using var t = new TestDispatcher(o => o.Containment.Mode = mode);

        // Arrange: a grandchild in a session of its own whose parent has exited (re-parented away from the job's tree).
        await t.Dispatcher.EnqueueAsync(new JobRequest("escape", ["sh -c \"(setsid sleep 300 &); sleep 300\""])
        {
            Environment = new Dictionary<string, string> { ["DISPATCHER_TEST_MARK"] = mark },
        });
        await ProcessProbe.WaitUntilAsync(() => Marked(mark).Count >= 2, "both sleeps run");

        // Act
        await t.Dispatcher.KillAsync(["escape"]);
        var result = await t.WaitAsync("escape");

        // Assert
        Assert.Equal(JobOutcome.Killed, result.Outcome);
        await ProcessProbe.WaitUntilAsync(() => Marked(mark).Count == 0, "no process of the job is left");
    }

    [SkippableTheory]
    [MemberData(nameof(Modes))]
    public async Task EveryCommand_RunsInEachCgroupOfItsJob_AndSoDoesWhatItStarts(ContainmentMode mode)
    {
        SkipUnlessAvailable(mode);
        await using var t = new TestDispatcher(o => o.Containment.Mode = mode);
        var containment = t.Dispatcher.Containment!;
        var limited = new[] { "memory", "pids" }.Where(containment.CanLimit).ToList();

        // Two commands (each has its own stub) and a grandchild; limits put the job in the memory and pids hierarchies too.
        await t.Dispatcher.EnqueueAsync(new JobRequest("where", ["cat /proc/self/cgroup", "sh -c \"sh -c 'cat /proc/self/cgroup'\""])
        {
            Limits = new JobLimits { MemoryBytes = 256L * 1024 * 1024, MaxProcesses = 100 },
        });
        var result = await t.WaitAsync("where");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        foreach (var command in result.CommandResults)
        {
            var lines = command.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            string Of(string hierarchy) => lines.Single(l => l.Split(':')[1].Split(',').Contains(hierarchy)).Split(':', 3)[2];
            var tracking = mode == ContainmentMode.CgroupV2 ? Of(string.Empty) : Of("freezer");
            Assert.Matches(@"/job\.\d+\.where$", tracking);
            foreach (var resource in limited.Where(r => containment.Description.Contains($"{r} by cgroup v1", StringComparison.Ordinal)))
            {
                Assert.Matches(@"/job\.\d+\.where$", Of(resource));
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Modes))]
    public async Task Dispose_RightAfterAJobWhoseLeftoversAreKilled_LeavesNoCgroupBehind(ContainmentMode mode)
    {
        SkipUnlessAvailable(mode);
        var mark = Guid.NewGuid().ToString("N");
        await using var cleanup = new MarkedCleanup(mark);
        var t = new TestDispatcher(o =>
        {
            o.Containment.Mode = mode;
            o.Queues["kill"] = new QueueOptions { MaxConcurrency = 0, Leftovers = LeftoverProcesses.Kill, Limits = new JobLimits { MaxProcesses = 50 } };
        });
        var containment = t.Dispatcher.Containment!;
        var roots = new[] { containment.Tracker.Root }.Concat(containment.LimitRoots).Distinct().ToList();

        // The job ends while its daemon runs: the dispatcher kills the daemon in the background, then removes its cgroups.
        await t.Dispatcher.EnqueueAsync(new JobRequest("leaver", ["sh -c \"setsid sleep 300 </dev/null >/dev/null 2>&1 &\""])
        {
            Queue = "kill",
            Environment = new Dictionary<string, string> { ["DISPATCHER_TEST_MARK"] = mark },
        });
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("leaver")).Outcome);
        await t.DisposeAsync();

        Assert.Empty(Marked(mark));
        Assert.All(roots, root => Assert.False(Directory.Exists(root), $"{root} is left behind"));
    }

    [SkippableTheory]
    [MemberData(nameof(Modes))]
    public async Task Dispose_RightAfterAKilledJob_LeavesNoCgroupBehind(ContainmentMode mode)
    {
        SkipUnlessAvailable(mode);
        var mark = Guid.NewGuid().ToString("N");
        await using var cleanup = new MarkedCleanup(mark);
        var t = new TestDispatcher(o => o.Containment.Mode = mode);
        var roots = new[] { t.Dispatcher.Containment!.Tracker.Root }.Concat(t.Dispatcher.Containment.LimitRoots).Distinct().ToList();

        // A grandchild in a session of its own that ignores SIGTERM: the kill ends with cgroup.kill (or freeze and SIGKILL).
        await t.Dispatcher.EnqueueAsync(new JobRequest("stubborn", ["sh -c \"trap '' TERM; (setsid sleep 300 &); sleep 300\""])
        {
            Environment = new Dictionary<string, string> { ["DISPATCHER_TEST_MARK"] = mark },
        });
        await ProcessProbe.WaitUntilAsync(() => Marked(mark).Count >= 3, "the job, its sleep and the escaped sleep run");
        await t.Dispatcher.KillAsync(["stubborn"]);
        Assert.Equal(JobOutcome.Killed, (await t.WaitAsync("stubborn")).Outcome);
        await t.DisposeAsync();

        Assert.Empty(Marked(mark));
        Assert.All(roots, root => Assert.False(Directory.Exists(root), $"{root} is left behind"));
    }

    [SkippableFact]
    public async Task CgroupV1_JobWithoutAProcessLimit_IsSpawnedInPlace_InEachCgroup_AndNoHostThreadStaysThere()
    {
        SkipUnlessAvailable(ContainmentMode.CgroupV1);
        await using var t = new TestDispatcher(o => o.Containment.Mode = ContainmentMode.CgroupV1);
        var containment = t.Dispatcher.Containment!;
        Skip.If(containment.Tracker.HomeTasks is null, $"this process's threads cannot move themselves here ({containment.Description})");
        var memory = containment.CanLimit("memory") && containment.Description.Contains("memory by cgroup v1", StringComparison.Ordinal);

        // Two commands and a grandchild; a memory limit puts the job in the v1 memory hierarchy too.
        await t.Dispatcher.EnqueueAsync(new JobRequest("inplace", ["cat /proc/self/cgroup", "sh -c \"sh -c 'cat /proc/self/cgroup'\""])
        {
            Limits = new JobLimits { MemoryBytes = 256L * 1024 * 1024 },
        });
        var result = await t.WaitAsync("inplace");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal(1, containment.JobsSpawnedInPlace);
        foreach (var command in result.CommandResults)
        {
            var lines = command.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            string Of(string hierarchy) => lines.Single(l => l.Split(':')[1].Split(',').Contains(hierarchy)).Split(':', 3)[2];
            Assert.Matches(@"/job\.\d+\.inplace$", Of("freezer"));
            if (memory)
            {
                Assert.Matches(@"/job\.\d+\.inplace$", Of("memory"));
            }
        }

        Assert.Empty(HostThreadsInJobCgroups());
    }

    [SkippableFact]
    public async Task CgroupV1_ManyJobsSpawnedInPlaceFromSeveralThreads_EachInItsOwnCgroup_NothingLeftBehind()
    {
        SkipUnlessAvailable(ContainmentMode.CgroupV1);
        var t = new TestDispatcher(o =>
        {
            o.Containment.Mode = ContainmentMode.CgroupV1;
            o.Queues["all"] = new QueueOptions { MaxConcurrency = 0 };
            o.Queues["two"] = new QueueOptions { MaxConcurrency = 2 };
        });
        var containment = t.Dispatcher.Containment!;
        Skip.If(containment.Tracker.HomeTasks is null, $"this process's threads cannot move themselves here ({containment.Description})");
        var roots = new[] { containment.Tracker.Root }.Concat(containment.LimitRoots).Distinct().ToList();

        // Spawned from the enqueuing threads (queue without limit) and from the runner's loop (queue limit 2) at once.
        var ids = Enumerable.Range(0, 60).Select(i => $"j{i}").ToList();
        await Task.WhenAll(ids.Select(id => Task.Run(() => t.Dispatcher.EnqueueAsync(
            new JobRequest(id, ["cat /proc/self/cgroup"]) { Queue = id.EndsWith('0') || id.EndsWith('5') ? "two" : "all" }).AsTask())));
        foreach (var id in ids)
        {
            var result = await t.WaitAsync(id);
            Assert.Equal(JobOutcome.Succeeded, result.Outcome);
            var freezer = result.CommandResults[0].Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Single(l => l.Split(':')[1].Split(',').Contains("freezer")).Split(':', 3)[2];
            Assert.EndsWith($".{id}", freezer, StringComparison.Ordinal);
        }

        Assert.Equal(ids.Count, containment.JobsSpawnedInPlace);
        Assert.Empty(HostThreadsInJobCgroups());
        await t.DisposeAsync();
        Assert.All(roots, root => Assert.False(Directory.Exists(root), $"{root} is left behind"));
    }

    [SkippableFact]
    public async Task CgroupV1_JobWithAProcessLimit_StartsThroughTheStub_AndTheLimitHolds()
    {
        SkipUnlessAvailable(ContainmentMode.CgroupV1);
        await using var t = new TestDispatcher(o => o.Containment.Mode = ContainmentMode.CgroupV1);
        var containment = t.Dispatcher.Containment!;
        Skip.If(!containment.Description.Contains("pids by cgroup v1", StringComparison.Ordinal), $"no cgroup v1 pids hierarchy here ({containment.Description})");

        // One process allowed: the command itself runs (a spawning thread inside would have made the fork fail), its fork fails.
        await t.Dispatcher.EnqueueAsync(new JobRequest("one", ["sh -c \"echo started; /bin/echo forked\""])
        {
            Limits = new JobLimits { MaxProcesses = 1 },
        });
        var result = await t.WaitAsync("one");

        Assert.Equal(0, containment.JobsSpawnedInPlace);
        Assert.Contains("started", result.CommandResults[0].Output, StringComparison.Ordinal);
        Assert.DoesNotContain("forked", result.CommandResults[0].Output, StringComparison.Ordinal);
    }

    /// <summary>Threads of this process that are in a job's cgroup (in any hierarchy) now.</summary>
    private static List<string> HostThreadsInJobCgroups() =>
        [.. Directory.EnumerateDirectories($"/proc/{Environment.ProcessId}/task")
            .SelectMany(task =>
            {
                try
                {
                    return File.ReadAllLines(Path.Combine(task, "cgroup")).Where(l => l.Contains("/job.", StringComparison.Ordinal)).Select(l => $"{task}: {l}");
                }
                catch (IOException)
                {
                    return [];
                }
            })];

    [Fact]
    public async Task Stub_ThatCannotPlaceItself_RunsNothing_AndExits125SayingWhy()
    {
        // A cgroup v1 "cgroup" that is an ordinary directory without a tasks file, with a quote in its path.
        var dir = Directory.CreateTempSubdirectory("not'a-cgroup-").FullName;
        var marker = Path.Combine(dir, "ran");
        var cgroup = new JobCgroup("j", [(new JobContainment.Hierarchy("cgroup v1 freezer", dir, V2: false), Path.Combine(dir, "missing"))]);
        var start = new ProcessStartInfo(CgroupSpawn.Shell) { RedirectStandardError = true };
        foreach (var argument in CgroupSpawn.Arguments(cgroup, "/usr/bin/touch", [marker]).Skip(1))
        {
            start.ArgumentList.Add(argument);
        }

        using var stub = Process.Start(start)!;
        var error = await stub.StandardError.ReadToEndAsync();
        await stub.WaitForExitAsync();

        Assert.Equal(CgroupSpawn.NotPlacedExitCode, stub.ExitCode);
        Assert.Contains("could not be placed in the cgroups of its job", error, StringComparison.Ordinal);
        Assert.False(File.Exists(marker));
        Directory.Delete(dir, recursive: true);
    }

    [SkippableTheory]
    [MemberData(nameof(Modes))]
    public async Task JobEnd_LeftoverWithKillPolicy_IsKilled_AndWithKeepPolicy_Survives(ContainmentMode mode)
    {
        SkipUnlessAvailable(mode);
        var mark = Guid.NewGuid().ToString("N");
        await using var cleanup = new MarkedCleanup(mark);
        await using var t = new TestDispatcher(o =>
        {
            o.Containment.Mode = mode;
            o.Queues["kill"] = new QueueOptions { MaxConcurrency = 0, Leftovers = LeftoverProcesses.Kill };
            o.Queues["keep"] = new QueueOptions { MaxConcurrency = 0 };
        });
        var env = new Dictionary<string, string> { ["DISPATCHER_TEST_MARK"] = mark };

        // A daemon that leaves the job's session and closes the job's output: the job ends while it runs on.
        const string Daemon = "sh -c \"setsid sleep 300 </dev/null >/dev/null 2>&1 &\"";
        await t.Dispatcher.EnqueueAsync(new JobRequest("keeper", [Daemon]) { Queue = "keep", Environment = env });
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("keeper")).Outcome);
        await ProcessProbe.WaitUntilAsync(() => Marked(mark).Count == 1, "the kept daemon runs");
        var kept = Marked(mark).Single();

        await t.Dispatcher.EnqueueAsync(new JobRequest("killer", [Daemon]) { Queue = "kill", Environment = env });
        Assert.Equal(JobOutcome.Succeeded, (await t.WaitAsync("killer")).Outcome);
        await ProcessProbe.WaitUntilAsync(() => Marked(mark).SequenceEqual([kept]), "the killer queue's daemon is gone, the kept one is not");

        // The kept daemon's end lets the dispatcher remove its cgroup (on disposal at the latest).
        Process.GetProcessById(kept).Kill();
        await ProcessProbe.WaitUntilAsync(() => Marked(mark).Count == 0, "the kept daemon is gone");
    }

    /// <summary>Skips a test, saying why, when this machine cannot track jobs the way it asks for.</summary>
    internal static void SkipUnlessAvailable(ContainmentMode mode)
    {
        var layout = CgroupLayout.Detect();
        var reason = layout.WhyUnavailable(mode);
        Skip.If(reason is not null, $"{mode} is not available here: {reason}");
    }

    /// <summary>Kills what a test left (after a failure) so that it does not outlive the test run.</summary>
    internal sealed class MarkedCleanup(string mark) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            foreach (var pid in Marked(mark))
            {
                try
                {
                    Process.GetProcessById(pid).Kill();
                }
                catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
                {
                }
            }

            return ValueTask.CompletedTask;
        }
    }

    /// <summary>Live processes whose environment holds the test's mark.</summary>
    internal static List<int> Marked(string mark)
    {
        var needle = "DISPATCHER_TEST_MARK=" + mark;
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                if (stat[(stat.LastIndexOf(')') + 2)..][0] == 'Z')
                {
                    continue;
                }

                if (File.ReadAllText(Path.Combine(dir, "environ")).Split('\0').Contains(needle))
                {
                    found.Add(pid);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }

        return found;
    }
}

public sealed class CgroupLayoutTests
{
    private const string HybridMountInfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """;

    private const string HybridSelf = """
        9:name=systemd:/
        6:freezer:/
        4:memory:/process_api/1edc
        2:cpu,cpuacct:/
        0::/
        """;

    [Fact]
    public void Parse_Hybrid_FindsEachHierarchyAndTheOwnCgroup()
    {
        var layout = CgroupLayout.Parse(HybridMountInfo, HybridSelf);

        Assert.Equal("/sys/fs/cgroup/unified", layout.Unified);
        Assert.Equal("/sys/fs/cgroup/freezer", layout.V1["freezer"]);
        Assert.Equal("/sys/fs/cgroup/memory/process_api/1edc", layout.V1["memory"]);
        Assert.Equal("/sys/fs/cgroup/cpu,cpuacct", layout.V1["cpu"]);
        Assert.False(layout.V1.ContainsKey("pids"));
    }

    [Fact]
    public void Parse_PureV2InANamespacedContainer_UsesTheMountRoot()
    {
        // A container whose cgroup mount shows only its own subtree (root /docker/abc).
        var layout = CgroupLayout.Parse(
            "30 20 0:26 /docker/abc /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/docker/abc/app\n");

        Assert.Equal("/sys/fs/cgroup/app", layout.Unified);
        Assert.Empty(layout.V1);
    }

    [Fact]
    public void Parse_ConfiguredParent_ReplacesTheOwnCgroup()
    {
        var layout = CgroupLayout.Parse(HybridMountInfo, HybridSelf, parent: "/system.slice/dispatcher.service");

        Assert.Equal("/sys/fs/cgroup/unified/system.slice/dispatcher.service", layout.Unified);
        Assert.Equal("/sys/fs/cgroup/memory/system.slice/dispatcher.service", layout.V1["memory"]);
    }

    [Fact]
    public void Parse_EscapedMountPoint_IsUnescaped() =>
        Assert.Equal("/mnt/my cgroup", CgroupLayout.Parse("41 31 0:38 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n", "0::/\n").Unified);

    [Fact]
    public void Create_AutoWhereNoCgroupCanBeMade_LogsWhyAndFallsBack()
    {
        var logger = new ListLogger();
        var options = new DispatcherOptions();
        options.Containment.Mode = ContainmentMode.Auto;
        options.Containment.CgroupParent = "/no-such-cgroup-" + Guid.NewGuid().ToString("N");

        var containment = JobContainment.Create(options, logger);

        Assert.Null(containment);
        var line = Assert.Single(logger.Lines, l => l.Id == 502);
        Assert.Contains("does not exist", line.Text, StringComparison.Ordinal);
        Assert.Contains("session and parent process ids", line.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_RequiredVersionUnavailable_ThrowsSayingWhy()
    {
        var options = new DispatcherOptions();
        options.Containment.Mode = ContainmentMode.CgroupV2;
        options.Containment.CgroupParent = "/no-such-cgroup";

        var ex = Assert.Throws<InvalidOperationException>(() => JobContainment.Create(options, new ListLogger()));

        Assert.Contains("Dispatcher:Containment:Mode is CgroupV2", ex.Message, StringComparison.Ordinal);
        Assert.Contains("/no-such-cgroup", ex.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Create_Auto_LogsTheModeInForce()
    {
        ContainmentTests.SkipUnlessAvailable(ContainmentMode.Auto);
        var logger = new ListLogger();
        var options = new DispatcherOptions();
        options.Containment.Mode = ContainmentMode.Auto;

        using var containment = JobContainment.Create(options, logger);

        Assert.NotNull(containment);
        Assert.Contains(containment.Description, Assert.Single(logger.Lines, l => l.Id == 501).Text, StringComparison.Ordinal);
    }

    private sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
    {
        public List<(int Id, string Text)> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Add((eventId.Id, formatter(state, exception)));
    }
}
