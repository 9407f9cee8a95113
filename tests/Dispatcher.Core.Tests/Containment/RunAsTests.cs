using Dispatcher.Storage;

namespace Dispatcher.Tests.Containment;

/// <summary>Jobs run as another user, with real processes (needs root and the user <c>nobody</c>; skipped, saying so, elsewhere).</summary>
public sealed class RunAsTests
{
    [SkippableFact]
    public async Task QueueRunAs_Nobody_SeesUidGidAndGroupsOfNobody()
    {
        SkipUnlessRoot();
        await using var t = new TestDispatcher(o => o.Queues["low"] = new QueueOptions { MaxConcurrency = 0, RunAs = "nobody" });

        await t.RunInAsync("low", "who", "id -u", "id -g", "id -G", "sh -c \"echo $HOME $USER\"");
        var result = await t.WaitAsync("who");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal(["65534\n", "65534\n", "65534\n", "/nonexistent nobody\n"], result.CommandResults.Select(c => c.Output));
    }

    [SkippableFact]
    public async Task QueueRunAs_WithContainment_RunsAsNobodyInsideTheJobsCgroup()
    {
        SkipUnlessRoot();
        ContainmentTests.SkipUnlessAvailable(ContainmentMode.Auto);
        await using var t = new TestDispatcher(o =>
        {
            o.Containment.Mode = ContainmentMode.Auto;
            o.Queues["low"] = new QueueOptions { MaxConcurrency = 0, RunAs = "nobody" };
        });

        await t.RunInAsync("low", "who", "id -u", "cat /proc/self/cgroup");
        var result = await t.WaitAsync("who");

        Assert.Equal(JobOutcome.Succeeded, result.Outcome);
        Assert.Equal("65534\n", result.CommandResults[0].Output);
        Assert.Contains("/job.", result.CommandResults[1].Output, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task JobRunAs_NotAllowedByTheHost_IsRejectedAndNeverStarts()
    {
        SkipUnlessRoot();
        await using var t = new TestDispatcher();

        var ex = await Assert.ThrowsAsync<JobRejectedException>(() => t.Dispatcher.EnqueueAsync(new JobRequest("sneaky", ["id -u"]) { RunAs = "nobody" }).AsTask());

        Assert.Equal("Job 'sneaky' asks to run as 'nobody', which is neither its queue's user nor listed in Dispatcher:AllowedRunAsUsers.", ex.Message);
        Assert.Empty(t.Dispatcher.List());
        Assert.Null(t.Dispatcher.GetResult("sneaky"));
    }

    [SkippableFact]
    public async Task JobRunAs_AllowedByTheHost_Runs()
    {
        SkipUnlessRoot();
        await using var t = new TestDispatcher(o => o.AllowedRunAsUsers.Add("nobody"));

        await t.Dispatcher.EnqueueAsync(new JobRequest("allowed", ["id -u"]) { RunAs = "nobody" });

        Assert.Equal("65534\n", (await t.WaitAsync("allowed")).CommandResults[0].Output);
    }

    [Fact]
    public async Task JobRunAs_UnknownUser_IsRejected()
    {
        await using var t = new TestDispatcher(o => o.AllowedRunAsUsers.Add("no-such-user-here"));

        var ex = await Assert.ThrowsAsync<JobRejectedException>(() => t.Dispatcher.EnqueueAsync(new JobRequest("ghost", ["true"]) { RunAs = "no-such-user-here" }).AsTask());

        Assert.Equal("Job 'ghost' is to run as 'no-such-user-here', and there is no such user.", ex.Message);
    }

    [Fact]
    public void Journal_KeepsRunAsAndLimits_OfAPendingJob()
    {
        var request = new JobRequest("j", ["true"]) { RunAs = "nobody", Limits = new JobLimits { MemoryBytes = 1 << 20, MaxProcesses = 7 } };

        var json = System.Text.Json.JsonSerializer.Serialize(StoredRecord.From(new JobEnqueuedRecord(request, DateTimeOffset.UnixEpoch)), StoreJsonContext.Default.StoredRecord);
        var back = (JobEnqueuedRecord)System.Text.Json.JsonSerializer.Deserialize(json, StoreJsonContext.Default.StoredRecord)!.ToRecord()!;

        Assert.Equal("nobody", back.Request.RunAs);
        Assert.Equal(request.Limits, back.Request.Limits);
    }

    private static void SkipUnlessRoot()
    {
        Skip.IfNot(Environment.UserName == "root", "running as another user needs root");
        Skip.IfNot(File.ReadLines("/etc/passwd").Any(l => l.StartsWith("nobody:x:65534:65534:", StringComparison.Ordinal)), "no user nobody (65534) here");
    }
}
